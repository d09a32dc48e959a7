"""Shift group: a register shift closed by a cashier."""

from __future__ import annotations

from .base import BaseSchema
from .base import count
from .base import datetime
from .base import money
from .base import nested
from .base import text


class ShiftSessionSchema(BaseSchema):
    """The register session behind a shift (DealPOS's page ends at ``ModifierName``)."""

    ID = text()
    RegisterID = text()
    UserID = text()
    UserName = text()
    EntityID = text()
    Start = datetime()
    End = datetime()
    Note = text()
    Number = text()
    Sales = money()
    Tax = money()
    Taxable = money()
    TaxExempt = money()
    Invoice_Count = count()
    LastNumber = text()
    InvoiceDateTypeID = count()
    TypeLabel = text()
    SalesNSurcharge = money()
    Visitors = count()
    Surcharge = money()
    ARAmount = money()
    ARTransaction = money()
    RegisterName = text()
    CreatorID = text()
    Created = datetime()
    ModifierID = text()
    Modified = datetime()
    CreatorName = text()
    ModifierName = text()


class ShiftSchema(BaseSchema):
    """A closed shift (Close Shift)."""

    ID = text(required=True)
    Outlet = text(required=True)
    Register = text(required=True)
    Open = datetime(required=True)
    Close = datetime(required=True)
    Cashier = text(required=True)
    SalesNTax = money(required=True)
    TotalInvoice = count(required=True)
    Visitor = count(required=True)
    Number = text(required=True)
    Session = nested(ShiftSessionSchema, required=True)
