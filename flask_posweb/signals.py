"""Blinker signals sent by Flask-PosWeb. Declarations only.

The sender is always the Flask app. Every signal has one keyword argument
besides it (``event``, unless its doc says otherwise); receivers should accept
``**extra`` so that later arguments do not break them.

Per-event signals carry a :class:`~flask_posweb.WebhookEvent`. Their receivers
are isolated: each runs even if another raises, and each outcome is recorded
against the delivery so that a retry re-runs only the receivers that failed.
"""

from __future__ import annotations

from blinker import Namespace

#: Every Flask-PosWeb signal lives here; ``namespace.signal(name)`` returns the
#: same object as the module attribute below.
namespace = Namespace()

# -- lifecycle ----------------------------------------------------------------

webhook_received = namespace.signal(
    "webhook-received",
    doc="A delivery passed authentication and validation and was stored. "
    "Sent once per delivery, before its receivers run. Keyword: ``event``.",
)
webhook_rejected = namespace.signal(
    "webhook-rejected",
    doc="A request was refused with a 4xx/5xx. Keywords: ``event_name``, ``error`` "
    "(the :class:`~flask_posweb.exceptions.WebhookError`), ``delivery_id`` (``None`` "
    "when it was not stored).",
)
webhook_processed = namespace.signal(
    "webhook-processed",
    doc="Every receiver of a delivery has succeeded. Keyword: ``event``.",
)
receiver_failed = namespace.signal(
    "receiver-failed",
    doc="A receiver raised. Keywords: ``event``, ``receiver`` (its name), ``error`` "
    "(the exception). Its traceback is logged and kept in the inbox.",
)
webhook_dead = namespace.signal(
    "webhook-dead",
    doc="A delivery failed ``POSWEB_MAX_ATTEMPTS`` times and will not be retried "
    "again (replay it by hand). Keywords: ``event``, ``failed`` (receiver names).",
)

# -- loyalty calls (request/response) ------------------------------------------

loyalty_requested = namespace.signal(
    "loyalty-requested",
    doc="DealPOS called a loyalty endpoint with a valid body. Keyword: ``call`` "
    "(a :class:`~flask_posweb.loyalty.LoyaltyCall`).",
)
loyalty_answered = namespace.signal(
    "loyalty-answered",
    doc="A loyalty call was answered. Keywords: ``call``, ``status``, ``answer`` (the JSON "
    "sent), ``replayed`` (``True`` when a stored answer was sent again).",
)
loyalty_failed = namespace.signal(
    "loyalty-failed",
    doc="A loyalty provider raised, returned a malformed answer or overran its time "
    "budget. Keywords: ``call``, ``error``.",
)

# -- one per event in flask_posweb.events.EVENTS, same order ---------------------

product_created = namespace.signal(
    "product-created", doc="Product Created (Product). Keyword: ``event``."
)
product_updated = namespace.signal(
    "product-updated", doc="Product Updated (Product). Keyword: ``event``."
)
product_deleted = namespace.signal(
    "product-deleted", doc="Product Deleted (Product). Keyword: ``event``."
)
product_variant_created = namespace.signal(
    "product-variant-created", doc="Product Variant Created (Product). Keyword: ``event``."
)
product_variant_updated = namespace.signal(
    "product-variant-updated", doc="Product Variant Updated (Product). Keyword: ``event``."
)
invoice_created = namespace.signal(
    "invoice-created", doc="Invoice Created (Invoice). Keyword: ``event``."
)
invoice_deleted = namespace.signal(
    "invoice-deleted", doc="Invoice Deleted (Invoice). Keyword: ``event``."
)
invoice_erased = namespace.signal(
    "invoice-erased", doc="Invoice Erased (Invoice). Keyword: ``event``."
)
customer_created = namespace.signal(
    "customer-created", doc="Customer Created (Customer). Keyword: ``event``."
)
customer_deleted = namespace.signal(
    "customer-deleted", doc="Customer Deleted (Customer). Keyword: ``event``."
)
supplier_created = namespace.signal(
    "supplier-created", doc="Supplier Created (Supplier). Keyword: ``event``."
)
supplier_deleted = namespace.signal(
    "supplier-deleted", doc="Supplier Deleted (Supplier). Keyword: ``event``."
)
bill_created = namespace.signal("bill-created", doc="Bill Created (Bill). Keyword: ``event``.")
bill_updated = namespace.signal("bill-updated", doc="Bill Updated (Bill). Keyword: ``event``.")
bill_deleted = namespace.signal("bill-deleted", doc="Bill Deleted (Bill). Keyword: ``event``.")
transfer_order_created = namespace.signal(
    "transfer-order-created", doc="Transfer Order Created (Transfer Order). Keyword: ``event``."
)
outbound_logistic_completed = namespace.signal(
    "outbound-logistic-completed",
    doc="Outbound Logistic Complete (Outbound Logistic). Keyword: ``event``.",
)
inbound_logistic_completed = namespace.signal(
    "inbound-logistic-completed",
    doc="Inbound Logistic Complete (Inbound Logistic). Keyword: ``event``.",
)
adjustment_created = namespace.signal(
    "adjustment-created", doc="Adjustment Created (Adjustment). Keyword: ``event``."
)
payment_created = namespace.signal(
    "payment-created", doc="Payment Created (Invoice Payment). Keyword: ``event``."
)
payment_updated = namespace.signal(
    "payment-updated", doc="Payment Updated (Invoice Payment). Keyword: ``event``."
)
payment_deleted = namespace.signal(
    "payment-deleted", doc="Payment Deleted (Invoice Payment). Keyword: ``event``."
)
payment_written_off = namespace.signal(
    "payment-written-off", doc="Payment Write Off (Invoice Payment). Keyword: ``event``."
)
invoice_written_off = namespace.signal(
    "invoice-written-off", doc="Invoice Write Off (Invoice Write Off). Keyword: ``event``."
)
supplier_bill_written_off = namespace.signal(
    "supplier-bill-written-off",
    doc="Supplier Bill Write Off (Supplier Bill Write Off). Keyword: ``event``.",
)
supplier_bill_payment_created = namespace.signal(
    "supplier-bill-payment-created",
    doc="Supplier Bill Payment Created (Bill Payment). Keyword: ``event``.",
)
supplier_bill_payment_deleted = namespace.signal(
    "supplier-bill-payment-deleted",
    doc="Supplier Bill Payment Deleted (Bill Payment). Keyword: ``event``.",
)
shift_closed = namespace.signal("shift-closed", doc="Close Shift (Shift). Keyword: ``event``.")
outlet_created = namespace.signal(
    "outlet-created", doc="Outlet Created (Outlet). Keyword: ``event``."
)
outlet_updated = namespace.signal(
    "outlet-updated", doc="Outlet Updated (Outlet). Keyword: ``event``."
)
outlet_deleted = namespace.signal(
    "outlet-deleted", doc="Outlet Deleted (Outlet). Keyword: ``event``."
)
sales_order_created = namespace.signal(
    "sales-order-created", doc="Sales Order Created (Sales Order). Keyword: ``event``."
)
