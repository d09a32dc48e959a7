"""Blinker signals sent by Flask-PosWeb. Declarations only.

Each signal's name is its Python name (``payment_created``), which is also
the event's canonical name. The sender is always the Flask app. Every other
argument is a keyword argument: ``event`` for the events' signals, those in
:data:`KEYWORDS` for the lifecycle signals, and those in :data:`EXTRA` for
every signal, given to the receivers that name them (or take ``**extra``): a
receiver written before an extra argument was added keeps working.

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
    "webhook_received",
    doc="A delivery passed authentication and validation and was stored. "
    "Sent once per delivery, before its receivers run. Keyword: ``event``.",
)
webhook_rejected = namespace.signal(
    "webhook_rejected",
    doc="A request was refused with a 4xx/5xx. Keywords: ``event_name``, ``error`` "
    "(the :class:`~flask_posweb.exceptions.WebhookError`), ``delivery_id`` (``None`` "
    "when it was not stored).",
)
webhook_repeated = namespace.signal(
    "webhook_repeated",
    doc="A delivery repeated one stored already (DealPOS's retry, or a duplicate "
    "within ``POSWEB_DUPLICATE_WINDOW``) and was answered ``200`` without being "
    "stored or dispatched again. Keywords: ``event_name``, ``delivery_id`` (the "
    "stored one's).",
)
webhook_incomplete = namespace.signal(
    "webhook_incomplete",
    doc="A delivery lacked fields its documentation marks required and was accepted "
    "all the same (their marks are uncertain; see ``POSWEB_STRICT_PRESENCE``). Sent "
    "once, when it is stored. Keywords: ``event``, ``missing`` (field paths).",
)
webhook_processed = namespace.signal(
    "webhook_processed",
    doc="Every receiver of a delivery has succeeded. Keyword: ``event``.",
)
receiver_failed = namespace.signal(
    "receiver_failed",
    doc="A receiver raised. Keywords: ``event``, ``receiver`` (its name), ``error`` "
    "(the exception). Its traceback is logged and kept in the inbox.",
)
webhook_dead = namespace.signal(
    "webhook_dead",
    doc="A delivery failed ``POSWEB_MAX_ATTEMPTS`` times and will not be retried "
    "again (replay it by hand). Keywords: ``event``, ``failed`` (receiver names).",
)
webhook_dispatched = namespace.signal(
    "webhook_dispatched",
    doc="A dispatch of a stored delivery ended and its outcome was recorded "
    "(processed, failed, unhandled, dead or rejected). Keyword: ``outcome`` (an "
    ":class:`~flask_posweb.dispatch.outcomes.Outcome`: delivery id, event, merchant, "
    "status, attempts, duration, receivers).",
)

webhook_stranded = namespace.signal(
    "webhook_stranded",
    doc="A delivery waited ``POSWEB_STRANDED_AFTER`` for receivers that no live "
    "dispatcher has (a deploy renamed or removed one) and was marked stranded: "
    "adopt it with ``flask posweb replay --adopt``. Keywords: ``delivery_id``, "
    "``event_name``, ``receivers`` (the names it expects).",
)

# -- loyalty calls (request/response) ------------------------------------------

loyalty_requested = namespace.signal(
    "loyalty_requested",
    doc="DealPOS called a loyalty endpoint with a valid body. Keyword: ``call`` "
    "(a :class:`~flask_posweb.loyalty.LoyaltyCall`).",
)
loyalty_answered = namespace.signal(
    "loyalty_answered",
    doc="A loyalty call was answered. Keywords: ``call``, ``status``, ``answer`` (the JSON "
    "sent), ``replayed`` (``True`` when a stored answer was sent again).",
)
loyalty_failed = namespace.signal(
    "loyalty_failed",
    doc="A loyalty provider raised, returned a malformed answer or overran its time "
    "budget. Keywords: ``call``, ``error``.",
)

#: Keyword arguments every signal sends, to the receivers that take them (a
#: parameter of that name, or ``**extra``): ``merchant``, who sent the delivery
#: or call (``None``: the app's own credentials; a refused request's is the one
#: its URL named).
#:
#: .. versionadded:: 0.3
EXTRA: tuple[str, ...] = ("merchant",)

#: The keyword arguments each lifecycle signal is sent with; each event's signal
#: is sent with ``event`` only. ``PosWeb.on`` checks receivers against these.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "webhook_received": ("event",),
    "webhook_rejected": ("event_name", "error", "delivery_id"),
    "webhook_repeated": ("event_name", "delivery_id"),
    "webhook_incomplete": ("event", "missing"),
    "webhook_processed": ("event",),
    "receiver_failed": ("event", "receiver", "error"),
    "webhook_dead": ("event", "failed"),
    "webhook_stranded": ("delivery_id", "event_name", "receivers"),
    "webhook_dispatched": ("outcome",),
    "loyalty_requested": ("call",),
    "loyalty_answered": ("call", "status", "answer", "replayed"),
    "loyalty_failed": ("call", "error"),
}

# -- one per event in flask_posweb.events.EVENTS, same order ---------------------

product_created = namespace.signal(
    "product_created", doc="Product Created (Product). Keyword: ``event``."
)
product_updated = namespace.signal(
    "product_updated", doc="Product Updated (Product). Keyword: ``event``."
)
product_deleted = namespace.signal(
    "product_deleted", doc="Product Deleted (Product). Keyword: ``event``."
)
product_variant_created = namespace.signal(
    "product_variant_created", doc="Product Variant Created (Product). Keyword: ``event``."
)
product_variant_updated = namespace.signal(
    "product_variant_updated", doc="Product Variant Updated (Product). Keyword: ``event``."
)
invoice_created = namespace.signal(
    "invoice_created", doc="Invoice Created (Invoice). Keyword: ``event``."
)
invoice_deleted = namespace.signal(
    "invoice_deleted", doc="Invoice Deleted (Invoice). Keyword: ``event``."
)
invoice_erased = namespace.signal(
    "invoice_erased", doc="Invoice Erased (Invoice). Keyword: ``event``."
)
customer_created = namespace.signal(
    "customer_created", doc="Customer Created (Customer). Keyword: ``event``."
)
customer_deleted = namespace.signal(
    "customer_deleted", doc="Customer Deleted (Customer). Keyword: ``event``."
)
supplier_created = namespace.signal(
    "supplier_created", doc="Supplier Created (Supplier). Keyword: ``event``."
)
supplier_deleted = namespace.signal(
    "supplier_deleted", doc="Supplier Deleted (Supplier). Keyword: ``event``."
)
bill_created = namespace.signal("bill_created", doc="Bill Created (Bill). Keyword: ``event``.")
bill_updated = namespace.signal("bill_updated", doc="Bill Updated (Bill). Keyword: ``event``.")
bill_deleted = namespace.signal("bill_deleted", doc="Bill Deleted (Bill). Keyword: ``event``.")
transfer_order_created = namespace.signal(
    "transfer_order_created", doc="Transfer Order Created (Transfer Order). Keyword: ``event``."
)
outbound_logistic_completed = namespace.signal(
    "outbound_logistic_completed",
    doc="Outbound Logistic Complete (Outbound Logistic). Keyword: ``event``.",
)
inbound_logistic_completed = namespace.signal(
    "inbound_logistic_completed",
    doc="Inbound Logistic Complete (Inbound Logistic). Keyword: ``event``.",
)
adjustment_created = namespace.signal(
    "adjustment_created", doc="Adjustment Created (Adjustment). Keyword: ``event``."
)
payment_created = namespace.signal(
    "payment_created", doc="Payment Created (Invoice Payment). Keyword: ``event``."
)
payment_updated = namespace.signal(
    "payment_updated", doc="Payment Updated (Invoice Payment). Keyword: ``event``."
)
payment_deleted = namespace.signal(
    "payment_deleted", doc="Payment Deleted (Invoice Payment). Keyword: ``event``."
)
payment_written_off = namespace.signal(
    "payment_written_off", doc="Payment Write Off (Invoice Payment). Keyword: ``event``."
)
invoice_written_off = namespace.signal(
    "invoice_written_off", doc="Invoice Write Off (Invoice Write Off). Keyword: ``event``."
)
supplier_bill_written_off = namespace.signal(
    "supplier_bill_written_off",
    doc="Supplier Bill Write Off (Supplier Bill Write Off). Keyword: ``event``.",
)
supplier_bill_payment_created = namespace.signal(
    "supplier_bill_payment_created",
    doc="Supplier Bill Payment Created (Bill Payment). Keyword: ``event``.",
)
supplier_bill_payment_deleted = namespace.signal(
    "supplier_bill_payment_deleted",
    doc="Supplier Bill Payment Deleted (Bill Payment). Keyword: ``event``.",
)
shift_closed = namespace.signal("shift_closed", doc="Close Shift (Shift). Keyword: ``event``.")
outlet_created = namespace.signal(
    "outlet_created", doc="Outlet Created (Outlet). Keyword: ``event``."
)
outlet_updated = namespace.signal(
    "outlet_updated", doc="Outlet Updated (Outlet). Keyword: ``event``."
)
outlet_deleted = namespace.signal(
    "outlet_deleted", doc="Outlet Deleted (Outlet). Keyword: ``event``."
)
sales_order_created = namespace.signal(
    "sales_order_created", doc="Sales Order Created (Sales Order). Keyword: ``event``."
)
