"""Invoice and Sales Order groups: sales documents.

``Variants``, ``OutboundLogistics`` and ``Payments`` item schemas are not
published; items are kept as plain objects. ``Void`` stays the string
``"Yes"``/``"No"`` DealPOS sends.
"""

from __future__ import annotations

from .base import BaseSchema
from .base import datetime
from .base import derive
from .base import many
from .base import money
from .base import nested
from .base import text


class InvoiceCustomerSchema(BaseSchema):
    """The customer of an invoice."""

    ID = text()
    Name = text()
    Email = text()
    Phone = text()
    Mobile = text()
    Code = text()
    Address = text()


class InvoiceSchema(BaseSchema):
    """A sales invoice (Invoice Created; no field is marked required)."""

    ID = text()
    Outlet = text()
    Number = text()
    Date = datetime()
    DueDate = datetime()
    Tag = text()
    Customer = nested(InvoiceCustomerSchema)
    CreatorID = text()
    Created = datetime()
    Discount1 = money()
    Discount2 = money()
    DiscountAmount = money()
    Gross = money()
    DiscountTotal = money()
    TaxType = text()
    TaxCalculation = text()
    Tax = money()
    TaxRate = money()
    Sales = money()
    Surcharge = money()
    SalesNTax = money()
    Coupon = text()
    CouponNote = text()
    Note = text()
    PointUsed = money()
    PointsEarned = money()
    Delivery = text()
    Void = text()
    Variants = many()
    OutboundLogistics = many()
    Payments = many()
    ReferenceNumber = text()
    OrderFulfillmentRecipient = nested()


SalesOrderCustomerSchema = derive(
    InvoiceCustomerSchema,
    name="SalesOrderCustomerSchema",
    doc="The customer of a sales order; these fields are required (may be empty).",
    required=("Name", "Email", "Phone", "Mobile", "Code"),
)

SalesOrderSchema = derive(
    InvoiceSchema,
    name="SalesOrderSchema",
    doc=(
        "A sales order turned into an invoice (Sales Order Created). The fields up to "
        "``TaxRate`` are marked required on DealPOS's page; the rest come from its "
        "generated sample and example only."
    ),
    required=(
        "ID",
        "Outlet",
        "Number",
        "Date",
        "DueDate",
        "Tag",
        "CreatorID",
        "Created",
        "Discount1",
        "Discount2",
        "DiscountAmount",
        "Gross",
        "DiscountTotal",
        "TaxType",
        "TaxCalculation",
        "Tax",
        "TaxRate",
    ),
    Customer=nested(SalesOrderCustomerSchema, required=True),
)
