"""The event catalogue: the one place that lists DealPOS's webhook events.

Everything else is derived from :data:`EVENTS`: the blueprint's URL rules,
the signals, the CLI listing, the docs' events table and the tests. DealPOS
puts no event type in the body; the URL it posts to says which event fired.

Sources: DealPOS's public developer documentation, as rebuilt in the
project's ``catalog.json``. Events marked ``provisional`` have no published
body: their schemas are permissive (or assumed from a sibling event) until a
real delivery shows the fields. Only Invoice Payment's required marks are
exact (``exact_marks``); elsewhere DealPOS itself omits marked fields, so
lacking them does not cost a delivery (see :mod:`.schemas.loading`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import difflib
import typing as t
from collections.abc import Mapping

import marshmallow as ma
from blinker import NamedSignal
from typing_extensions import TypeVar

from . import schemas as s
from .exceptions import UnknownEventError
from .schemas.loading import Loaded
from .schemas.loading import SchemaLoader
from .signals import namespace

__all__ = ["EVENTS", "EventType", "WebhookEvent", "get_event_type", "kebab"]

Certainty = t.Literal["observed", "slug", "inferred"]
#: The type of ``WebhookEvent.data``: a ``TypedDict`` of :mod:`flask_posweb.typed`
#: for one event, or a plain ``dict`` when unsaid.
D = TypeVar("D", default=dict[str, t.Any])


def kebab(name: str) -> str:
    """The one derivation of a canonical name: ``payment_created`` -> ``payment-created``.

    Used for the URL rule; the signal has the canonical name itself.
    """
    return name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class EventType:
    """One webhook event DealPOS can send.

    .. versionadded:: 0.1
    """

    #: Canonical name, ``<resource>_<past participle>``; also the endpoint name.
    name: str
    #: DealPOS's group (tag) in its documentation.
    group: str
    #: DealPOS's title for the event.
    title: str
    #: Schema of the body.
    schema: type[ma.Schema]
    #: When DealPOS sends it.
    description: str
    #: DealPOS's own key for the event (``paymentWriteoff``), where known.
    wire_name: str | None = None
    #: How the key is known: spelled out, seen only as a URL slug, or inferred.
    wire_name_certainty: Certainty | None = None
    #: ``True`` when DealPOS has not published the body: the schema is permissive
    #: or assumed from a sibling event.
    provisional: bool = False
    #: The field naming what a delivery is about (a payment's ``ID``): two
    #: deliveries about the same resource are never duplicates when another
    #: one came in between (see :mod:`.inbox.duplicates`).
    resource_key: str | None = None
    #: The schema's required/non-empty marks are exact (Invoice Payment): a body
    #: lacking one is refused even when ``POSWEB_STRICT_PRESENCE`` is off.
    exact_marks: bool = False

    #: The blinker signal sent for each delivery of this event.
    signal: NamedSignal = dataclasses.field(init=False, repr=False, compare=False)
    _loader: SchemaLoader = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal", namespace.signal(self.name))
        # One schema per event, compiled once (see schemas/compiled.py):
        # validation is most of the cost of receiving a webhook.
        loader = SchemaLoader(self.schema, exact_marks=self.exact_marks)
        object.__setattr__(self, "_loader", loader)

    @property
    def url_rule(self) -> str:
        """The URL rule under the blueprint's prefix, e.g. ``/payment-created``."""
        return "/" + kebab(self.name)

    def resource(self, data: Mapping[str, t.Any]) -> str | None:
        """What a validated body is about: the text of its :attr:`resource_key`
        field (a payment's ``ID``), if the event has one and the body holds it."""
        if self.resource_key is None:
            return None
        value = data.get(self.resource_key)
        if isinstance(value, bool) or not isinstance(value, (str, int, decimal.Decimal)):
            return None
        return str(value) or None

    def load(self, body: t.Any, *, strict: bool = False) -> Loaded:
        """Validate a parsed body.

        :param strict: refuse a body lacking marked fields even where the marks
            are uncertain.
        :raises marshmallow.ValidationError: with the messages per field.
        """
        return self._loader.load(body, strict=strict)


@dataclasses.dataclass(frozen=True)
class WebhookEvent(t.Generic[D]):
    """One validated delivery of an event, as handed to receivers.

    Its type parameter is the type of ``data``, for type checkers: annotate a
    receiver's ``event`` as ``WebhookEvent[PaymentCreated]`` (from
    :mod:`flask_posweb.typed`) and ``event.data["Amount"]`` is a ``Decimal``.
    A bare ``WebhookEvent`` is a ``WebhookEvent[dict[str, Any]]``.

    .. versionadded:: 0.1
    """

    #: Canonical event name.
    name: str
    #: The validated body: ``Decimal`` money, ``date``/``datetime`` values, nested
    #: objects, and every unknown field as received.
    data: D
    #: The exact bytes received.
    raw: bytes
    #: Id of the delivery in the inbox (``None`` without an inbox).
    id: int | None = None
    #: 1 for the first attempt, then 2, 3, ... on retries.
    attempt: int = 1
    #: ``True`` when an operator replayed the delivery.
    is_replay: bool = False
    #: When the delivery arrived (UTC).
    received_at: dt.datetime = dataclasses.field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc)
    )
    #: Request headers, credentials removed.
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Fields the documentation marks required that the body lacked
    #: (``"Customer.Email"``): accepted all the same, see ``POSWEB_STRICT_PRESENCE``.
    missing: tuple[str, ...] = ()
    #: The merchant that sent it: the one the URL names, or whose credential
    #: it carried (``None``: the app's own credentials).
    #:
    #: .. versionadded:: 0.3
    merchant: str | None = None

    @property
    def type(self) -> EventType:
        """The catalogue entry of this event."""
        return EVENTS[self.name]


_CATALOGUE = (
    EventType("product_created", "Product", "Product Created", s.ProductSchema,
        "A product is newly added.", "productCreated", "observed", resource_key="ID"),
    EventType("product_updated", "Product", "Product Updated", s.ProductSchema,
        "An existing product is edited.", "productUpdated", "observed", provisional=True,
        resource_key="ID"),
    EventType("product_deleted", "Product", "Product Deleted", s.ProductSchema,
        "A product is removed.", "productDeleted", "observed", provisional=True, resource_key="ID"),
    EventType("product_variant_created", "Product", "Product Variant Created", s.OpenSchema,
        "A new variant is added to a product.", "productVariantCreated", "observed",
        provisional=True),
    EventType("product_variant_updated", "Product", "Product Variant Updated", s.OpenSchema,
        "A product variant is edited.", "productVariantUpdated", "observed", provisional=True),
    EventType("invoice_created", "Invoice", "Invoice Created", s.InvoiceSchema,
        "A sales invoice is created.", "invoiceCreated", "observed", resource_key="ID"),
    EventType("invoice_deleted", "Invoice", "Invoice Deleted", s.InvoiceSchema,
        "A sales invoice is deleted.", "invoiceDeleted", "observed", provisional=True,
        resource_key="ID"),
    EventType("invoice_erased", "Invoice", "Invoice Erased", s.InvoiceSchema,
        "A sales invoice is permanently erased.", "invoiceErased", "observed", provisional=True,
        resource_key="ID"),
    EventType("customer_created", "Customer", "Customer Created", s.CustomerSchema,
        "A customer is added (Sell screen or Contacts > Customer).", "customerCreated", "inferred",
        resource_key="Code"),
    EventType("customer_deleted", "Customer", "Customer Deleted", s.CustomerDeletedSchema,
        "A customer is removed in Contacts > Customer.", "customerDeleted", "slug",
        resource_key="Code"),
    EventType("supplier_created", "Supplier", "Supplier Created", s.SupplierSchema,
        "A supplier is added.", "supplierCreated", "inferred", resource_key="Code"),
    EventType("supplier_deleted", "Supplier", "Supplier Deleted", s.SupplierDeletedSchema,
        "A supplier is removed.", "supplierDeleted", "inferred", resource_key="Code"),
    EventType("bill_created", "Bill", "Bill Created", s.OpenSchema, "A supplier bill is created.",
        provisional=True),
    EventType("bill_updated", "Bill", "Bill Updated", s.OpenSchema, "A supplier bill is edited.",
        provisional=True),
    EventType("bill_deleted", "Bill", "Bill Deleted", s.OpenSchema, "A supplier bill is deleted.",
        provisional=True),
    EventType("transfer_order_created", "Transfer Order", "Transfer Order Created",
        s.TransferOrderSchema, "A stock transfer between outlets is completed (despite the name).",
        "transferOrderCreated", "inferred", resource_key="Number"),
    EventType("outbound_logistic_completed", "Outbound Logistic", "Outbound Logistic Complete",
        s.OutboundLogisticSchema, "A delivery to a customer is completed.", resource_key="ID"),
    EventType("inbound_logistic_completed", "Inbound Logistic", "Inbound Logistic Complete",
        s.InboundLogisticSchema, "A delivery from a supplier is completed.", resource_key="Number"),
    EventType("adjustment_created", "Adjustment", "Adjustment Created", s.AdjustmentSchema,
        "An inventory adjustment is created.", "adjustmentCreated", "inferred", resource_key="ID"),
    EventType("payment_created", "Invoice Payment", "Payment Created", s.InvoicePaymentSchema,
        "A payment is recorded against a sales invoice.", "paymentCreated", "observed",
        resource_key="ID", exact_marks=True),
    EventType("payment_updated", "Invoice Payment", "Payment Updated", s.InvoicePaymentSchema,
        "An invoice payment is edited.", "paymentUpdated", "observed", resource_key="ID",
        exact_marks=True),
    EventType("payment_deleted", "Invoice Payment", "Payment Deleted", s.InvoicePaymentSchema,
        "An invoice payment is deleted.", "paymentDeleted", "observed", resource_key="ID",
        exact_marks=True),
    EventType("payment_written_off", "Invoice Payment", "Payment Write Off",
        s.PaymentWriteOffSchema, "An unpaid or partly paid invoice balance is written off.",
        "paymentWriteoff", "observed", resource_key="ID", exact_marks=True),
    EventType("invoice_written_off", "Invoice Write Off", "Invoice Write Off", s.OpenSchema,
        "An invoice is written off.", provisional=True),
    EventType("supplier_bill_written_off", "Supplier Bill Write Off", "Supplier Bill Write Off",
        s.OpenSchema, "A supplier bill is written off.", provisional=True),
    EventType("supplier_bill_payment_created", "Bill Payment", "Supplier Bill Payment Created",
        s.BillPaymentSchema, "A payment on a supplier bill is recorded.",
        "supplierBillPaymentCreated", "slug", resource_key="ID"),
    EventType("supplier_bill_payment_deleted", "Bill Payment", "Supplier Bill Payment Deleted",
        s.BillPaymentDeletedSchema, "A supplier bill payment is deleted.",
        "supplierBillPaymentDeleted", "inferred", resource_key="ID"),
    EventType("shift_closed", "Shift", "Close Shift", s.ShiftSchema,
        "A cashier closes a register shift.", resource_key="ID"),
    EventType("outlet_created", "Outlet", "Outlet Created", s.OpenSchema, "An outlet is created.",
        provisional=True),
    EventType("outlet_updated", "Outlet", "Outlet Updated", s.OpenSchema, "An outlet is edited.",
        provisional=True),
    EventType("outlet_deleted", "Outlet", "Outlet Deleted", s.OpenSchema, "An outlet is deleted.",
        provisional=True),
    EventType("sales_order_created", "Sales Order", "Sales Order Created", s.SalesOrderSchema,
        "A sales order becomes an invoice.", "salesOrderCreated", "inferred", resource_key="ID"),
)  # fmt: skip

#: Every event, by canonical name, in DealPOS's documentation order.
EVENTS: Mapping[str, EventType] = {event.name: event for event in _CATALOGUE}


def get_event_type(name: str) -> EventType:
    """Return the catalogue entry for ``name``.

    :raises UnknownEventError: with the closest names as a suggestion.
    """
    try:
        return EVENTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, EVENTS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownEventError(
            f"Unknown DealPOS event {name!r}.{hint} 'flask posweb events' lists them all."
        ) from None
