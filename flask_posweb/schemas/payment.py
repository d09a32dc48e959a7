"""Invoice Payment and Bill Payment groups.

Invoice payments follow the product's specification exactly: every field is
required and every string non-empty; ``Date`` is a date and ``Created`` a date
or date-time. Payment Created, Updated and Deleted send the same body; Write
Off adds ``TagID``.
"""

from __future__ import annotations

from .base import BaseSchema
from .base import date
from .base import datetime
from .base import derive
from .base import money
from .base import text


class PaymentSchema(BaseSchema):
    """Fields shared by invoice and supplier bill payments."""

    ID = text(required=True, non_empty=True)
    Outlet = text(required=True, non_empty=True)
    Number = text(required=True, non_empty=True)
    Amount = money(required=True)
    Method = text(required=True, non_empty=True)
    Created = datetime(required=True, non_empty=True)
    Creator = text(required=True, non_empty=True)
    CreatorID = text(non_empty=True)


class InvoicePaymentSchema(PaymentSchema):
    """A payment against a sales invoice (Payment Created, Updated, Deleted)."""

    InvoiceID = text(required=True, non_empty=True)
    Date = date(required=True, non_empty=True)


class PaymentWriteOffSchema(InvoicePaymentSchema):
    """An invoice balance written off: a payment plus the ``TagID`` of the write-off."""

    TagID = text()


class BillPaymentSchema(PaymentSchema):
    """A payment on a supplier bill (Supplier Bill Payment Created).

    ``Date`` has no declared format, so a date-time keeps its time here.
    """

    BillID = text(required=True, non_empty=True)
    Date = datetime(required=True, non_empty=True)


BillPaymentDeletedSchema = derive(
    BillPaymentSchema,
    name="BillPaymentDeletedSchema",
    doc="A deleted supplier bill payment; DealPOS's page ends after ``Date``.",
    optional=("Created", "Creator"),
)
