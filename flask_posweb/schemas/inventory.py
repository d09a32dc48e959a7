"""Transfer Order, Outbound/Inbound Logistic and Adjustment groups: stock moves.

Line items (``Variants``, ``AdjustedInventory``, ...) are validated with the
fields DealPOS published; fields after the point where its page stops are kept
as received.
"""

from __future__ import annotations

from .base import BaseSchema
from .base import datetime
from .base import many
from .base import money
from .base import nested
from .base import text
from .contact import LogisticContactSchema


class LineSchema(BaseSchema):
    """A product variant on a stock document."""

    VariantID = text(required=True, non_empty=True)
    Name = text(required=True, non_empty=True)
    Code = text(required=True, non_empty=True)


class TransferLineSchema(LineSchema):
    """A variant moved between outlets."""

    Quantity = money(required=True)
    Discount = money(required=True)
    Cost = money(required=True)
    Price = money(required=True)
    Note = text()


class TransferOrderSchema(BaseSchema):
    """A completed stock transfer (fires as Transfer Order Created)."""

    Outlet = text(required=True, non_empty=True)
    OutletID = text(non_empty=True)
    Destination = text(required=True, non_empty=True)
    Date = datetime(required=True, non_empty=True)
    Number = text(required=True, non_empty=True)
    Courier = text()
    Note = text()
    State = text(required=True, non_empty=True)
    ReceivedDate = datetime()
    ReceivedNote = text()
    CreatorID = text(required=True, non_empty=True)
    Created = datetime(required=True, non_empty=True)
    Variants = many(TransferLineSchema, required=True, non_empty=True)


class LogisticSchema(BaseSchema):
    """Fields shared by outbound and inbound logistics."""

    Outlet = text(required=True, non_empty=True)
    Number = text(required=True, non_empty=True)
    Date = datetime(required=True, non_empty=True)
    CreatorID = text(required=True, non_empty=True)
    Created = datetime(required=True, non_empty=True)
    Variants = many(LineSchema, required=True, non_empty=True)


class OutboundLogisticSchema(LogisticSchema):
    """A completed delivery to a customer."""

    ID = text()
    Customer = nested(LogisticContactSchema, required=True)


class InboundLogisticSchema(LogisticSchema):
    """A completed delivery from a supplier."""

    Supplier = nested(LogisticContactSchema, required=True)


class AdjustedLineSchema(BaseSchema):
    """A variant whose stock was adjusted."""

    Variant = text(required=True, non_empty=True)
    VariantID = text(required=True, non_empty=True)
    Code = text(required=True, non_empty=True)
    Quantity = money(required=True)
    UnitCost = money(required=True)
    UnitPrice = money(required=True)
    Price = money(required=True)
    TotalCost = money(required=True)
    TotalPrice = money(required=True)


class CountedLineSchema(BaseSchema):
    """A variant that was counted (only ``Variant`` is published)."""

    Variant = text(required=True, non_empty=True)


class AdjustmentSchema(BaseSchema):
    """An inventory adjustment (Adjustment Created)."""

    ID = text(required=True, non_empty=True)
    Outlet = text(required=True, non_empty=True)
    Date = datetime(required=True, non_empty=True)
    Number = text(required=True, non_empty=True)
    PIC = text()
    Type = text(required=True, non_empty=True)
    State = text(required=True, non_empty=True)
    Note = text(required=True)
    CreatorID = text(non_empty=True)
    AdjustedInventory = many(AdjustedLineSchema, required=True, non_empty=True)
    CountedInventory = many(CountedLineSchema, required=True, non_empty=True)
