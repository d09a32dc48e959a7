"""Typed payloads of the DealPOS events: ``WebhookEvent[PaymentCreated]``.

Generated from the catalogue by ``python -m flask_posweb.typedicts``;
do not edit. A field is ``NotRequired`` unless its presence is enforced (only
Invoice Payment's marks are exact); unknown fields are kept in ``event.data``
but not named here.

.. versionadded:: 0.2
"""

import datetime as dt
import typing as t
from decimal import Decimal

from typing_extensions import NotRequired
from typing_extensions import TypedDict

__all__ = [
    "AdjustedLine",
    "AdjustmentCreated",
    "BillCreated",
    "BillDeleted",
    "BillUpdated",
    "CountedLine",
    "CustomerCreated",
    "CustomerDeleted",
    "InboundLogisticCompleted",
    "InvoiceCreated",
    "InvoiceCustomer",
    "InvoiceDeleted",
    "InvoiceErased",
    "InvoiceWrittenOff",
    "Line",
    "LogisticContact",
    "OutboundLogisticCompleted",
    "OutletCreated",
    "OutletDeleted",
    "OutletUpdated",
    "PaymentCreated",
    "PaymentDeleted",
    "PaymentUpdated",
    "PaymentWrittenOff",
    "ProductCreated",
    "ProductDeleted",
    "ProductUpdated",
    "ProductVariantCreated",
    "ProductVariantUpdated",
    "SalesOrderCreated",
    "SalesOrderCustomer",
    "ShiftClosed",
    "ShiftSession",
    "SupplierBillPaymentCreated",
    "SupplierBillPaymentDeleted",
    "SupplierBillWrittenOff",
    "SupplierCreated",
    "SupplierDeleted",
    "TransferLine",
    "TransferOrderCreated",
]


class ProductCreated(TypedDict):
    """A product, as sent by Product Created (and, presumably, Updated/Deleted)."""

    ID: NotRequired[str | None]
    Category: NotRequired[str | None]
    Name: NotRequired[str | None]
    SupplierName: NotRequired[str | None]
    Brand: NotRequired[str | None]
    BrandName: NotRequired[str | None]
    Code: NotRequired[str | None]
    Discontinued: NotRequired[bool | None]
    Description: NotRequired[str | None]
    Storage: NotRequired[list[dict[str, t.Any]] | None]
    Tags: NotRequired[list[str] | None]
    ImageURL: NotRequired[str | None]
    ThumbnailURL: NotRequired[str | None]
    ExtraImageURL: NotRequired[list[str] | None]
    Variants: NotRequired[list[dict[str, t.Any]] | None]


class InvoiceCustomer(TypedDict):
    """The customer of an invoice."""

    ID: NotRequired[str | None]
    Name: NotRequired[str | None]
    Email: NotRequired[str | None]
    Phone: NotRequired[str | None]
    Mobile: NotRequired[str | None]
    Code: NotRequired[str | None]
    Address: NotRequired[str | None]


class InvoiceCreated(TypedDict):
    """A sales invoice (Invoice Created; no field is marked required)."""

    ID: NotRequired[str | None]
    Outlet: NotRequired[str | None]
    Number: NotRequired[str | None]
    Date: NotRequired[dt.date | dt.datetime | None]
    DueDate: NotRequired[dt.date | dt.datetime | None]
    Tag: NotRequired[str | None]
    Customer: NotRequired[InvoiceCustomer | None]
    CreatorID: NotRequired[str | None]
    Created: NotRequired[dt.date | dt.datetime | None]
    Discount1: NotRequired[Decimal | None]
    Discount2: NotRequired[Decimal | None]
    DiscountAmount: NotRequired[Decimal | None]
    Gross: NotRequired[Decimal | None]
    DiscountTotal: NotRequired[Decimal | None]
    TaxType: NotRequired[str | None]
    TaxCalculation: NotRequired[str | None]
    Tax: NotRequired[Decimal | None]
    TaxRate: NotRequired[Decimal | None]
    Sales: NotRequired[Decimal | None]
    Surcharge: NotRequired[Decimal | None]
    SalesNTax: NotRequired[Decimal | None]
    Coupon: NotRequired[str | None]
    CouponNote: NotRequired[str | None]
    Note: NotRequired[str | None]
    PointUsed: NotRequired[Decimal | None]
    PointsEarned: NotRequired[Decimal | None]
    Delivery: NotRequired[str | None]
    Void: NotRequired[str | None]
    Variants: NotRequired[list[dict[str, t.Any]] | None]
    OutboundLogistics: NotRequired[list[dict[str, t.Any]] | None]
    Payments: NotRequired[list[dict[str, t.Any]] | None]
    ReferenceNumber: NotRequired[str | None]
    OrderFulfillmentRecipient: NotRequired[dict[str, t.Any] | None]


class CustomerCreated(TypedDict):
    """A customer (Customer Created)."""

    FirstName: NotRequired[str | None]
    LastName: NotRequired[str | None]
    Title: NotRequired[str | None]
    Birthdate: NotRequired[dt.date | dt.datetime | None]
    Phone: NotRequired[str | None]
    Email: NotRequired[str | None]
    Gender: NotRequired[int | None]
    Outlet: NotRequired[str | None]
    Name: NotRequired[str | None]
    Code: NotRequired[str | None]
    Address: NotRequired[str | None]
    City: NotRequired[str | None]
    Mobile: NotRequired[str | None]
    MemberIdentification: NotRequired[str | None]


class CustomerDeleted(TypedDict):
    """A deleted customer."""

    FirstName: NotRequired[str | None]
    LastName: NotRequired[str | None]
    Title: NotRequired[str | None]
    Birthdate: NotRequired[dt.date | dt.datetime | None]
    Phone: NotRequired[str | None]
    Email: NotRequired[str | None]
    Gender: NotRequired[int | None]
    Outlet: NotRequired[str | None]
    Name: NotRequired[str | None]
    Code: NotRequired[str | None]
    Address: NotRequired[str | None]
    City: NotRequired[str | None]
    Mobile: NotRequired[str | None]
    MemberIdentification: NotRequired[str | None]


class SupplierCreated(TypedDict):
    """A supplier (Supplier Created)."""

    FirstName: NotRequired[str | None]
    LastName: NotRequired[str | None]
    Title: NotRequired[str | None]
    Phone: NotRequired[str | None]
    Email: NotRequired[str | None]
    Gender: NotRequired[str | None]
    Name: NotRequired[str | None]
    Code: NotRequired[str | None]
    Address: NotRequired[str | None]
    Mobile: NotRequired[str | None]


class SupplierDeleted(TypedDict):
    """A deleted supplier; DealPOS's page ends inside ``Address`` (``Mobile`` unseen)."""

    FirstName: NotRequired[str | None]
    LastName: NotRequired[str | None]
    Title: NotRequired[str | None]
    Phone: NotRequired[str | None]
    Email: NotRequired[str | None]
    Gender: NotRequired[str | None]
    Name: NotRequired[str | None]
    Code: NotRequired[str | None]
    Address: NotRequired[str | None]
    Mobile: NotRequired[str | None]


class TransferLine(TypedDict):
    """A variant moved between outlets."""

    VariantID: NotRequired[str | None]
    Name: NotRequired[str | None]
    Code: NotRequired[str | None]
    Quantity: NotRequired[Decimal | None]
    Discount: NotRequired[Decimal | None]
    Cost: NotRequired[Decimal | None]
    Price: NotRequired[Decimal | None]
    Note: NotRequired[str | None]


class TransferOrderCreated(TypedDict):
    """A completed stock transfer (fires as Transfer Order Created)."""

    Outlet: NotRequired[str | None]
    OutletID: NotRequired[str | None]
    Destination: NotRequired[str | None]
    Date: NotRequired[dt.date | dt.datetime | None]
    Number: NotRequired[str | None]
    Courier: NotRequired[str | None]
    Note: NotRequired[str | None]
    State: NotRequired[str | None]
    ReceivedDate: NotRequired[dt.date | dt.datetime | None]
    ReceivedNote: NotRequired[str | None]
    CreatorID: NotRequired[str | None]
    Created: NotRequired[dt.date | dt.datetime | None]
    Variants: NotRequired[list[TransferLine] | None]


class Line(TypedDict):
    """A product variant on a stock document."""

    VariantID: NotRequired[str | None]
    Name: NotRequired[str | None]
    Code: NotRequired[str | None]


class LogisticContact(TypedDict):
    """The customer or supplier of a logistic: a supplier's fields without ``Mobile``."""

    FirstName: NotRequired[str | None]
    LastName: NotRequired[str | None]
    Title: NotRequired[str | None]
    Phone: NotRequired[str | None]
    Email: NotRequired[str | None]
    Gender: NotRequired[str | None]
    Name: NotRequired[str | None]
    Code: NotRequired[str | None]
    Address: NotRequired[str | None]
    Mobile: NotRequired[str | None]


class OutboundLogisticCompleted(TypedDict):
    """A completed delivery to a customer."""

    Outlet: NotRequired[str | None]
    Number: NotRequired[str | None]
    Date: NotRequired[dt.date | dt.datetime | None]
    CreatorID: NotRequired[str | None]
    Created: NotRequired[dt.date | dt.datetime | None]
    Variants: NotRequired[list[Line] | None]
    ID: NotRequired[str | None]
    Customer: NotRequired[LogisticContact | None]


class InboundLogisticCompleted(TypedDict):
    """A completed delivery from a supplier."""

    Outlet: NotRequired[str | None]
    Number: NotRequired[str | None]
    Date: NotRequired[dt.date | dt.datetime | None]
    CreatorID: NotRequired[str | None]
    Created: NotRequired[dt.date | dt.datetime | None]
    Variants: NotRequired[list[Line] | None]
    Supplier: NotRequired[LogisticContact | None]


class AdjustedLine(TypedDict):
    """A variant whose stock was adjusted."""

    Variant: NotRequired[str | None]
    VariantID: NotRequired[str | None]
    Code: NotRequired[str | None]
    Quantity: NotRequired[Decimal | None]
    UnitCost: NotRequired[Decimal | None]
    UnitPrice: NotRequired[Decimal | None]
    Price: NotRequired[Decimal | None]
    TotalCost: NotRequired[Decimal | None]
    TotalPrice: NotRequired[Decimal | None]


class CountedLine(TypedDict):
    """A variant that was counted (only ``Variant`` is published)."""

    Variant: NotRequired[str | None]


class AdjustmentCreated(TypedDict):
    """An inventory adjustment (Adjustment Created)."""

    ID: NotRequired[str | None]
    Outlet: NotRequired[str | None]
    Date: NotRequired[dt.date | dt.datetime | None]
    Number: NotRequired[str | None]
    PIC: NotRequired[str | None]
    Type: NotRequired[str | None]
    State: NotRequired[str | None]
    Note: NotRequired[str | None]
    CreatorID: NotRequired[str | None]
    AdjustedInventory: NotRequired[list[AdjustedLine] | None]
    CountedInventory: NotRequired[list[CountedLine] | None]


class PaymentCreated(TypedDict):
    """A payment against a sales invoice (Payment Created, Updated, Deleted)."""

    ID: str
    Outlet: str
    Number: str
    Amount: Decimal
    Method: str
    Created: dt.date | dt.datetime | None
    Creator: str
    CreatorID: NotRequired[str | None]
    InvoiceID: str
    Date: dt.date | None


class PaymentWrittenOff(TypedDict):
    """An invoice balance written off: a payment plus the ``TagID`` of the write-off."""

    ID: str
    Outlet: str
    Number: str
    Amount: Decimal
    Method: str
    Created: dt.date | dt.datetime | None
    Creator: str
    CreatorID: NotRequired[str | None]
    InvoiceID: str
    Date: dt.date | None
    TagID: NotRequired[str | None]


class SupplierBillPaymentCreated(TypedDict):
    """A payment on a supplier bill (Supplier Bill Payment Created)."""

    ID: NotRequired[str | None]
    Outlet: NotRequired[str | None]
    Number: NotRequired[str | None]
    Amount: NotRequired[Decimal | None]
    Method: NotRequired[str | None]
    Created: NotRequired[dt.date | dt.datetime | None]
    Creator: NotRequired[str | None]
    CreatorID: NotRequired[str | None]
    BillID: NotRequired[str | None]
    Date: NotRequired[dt.date | dt.datetime | None]


class SupplierBillPaymentDeleted(TypedDict):
    """A deleted supplier bill payment; DealPOS's page ends after ``Date``."""

    ID: NotRequired[str | None]
    Outlet: NotRequired[str | None]
    Number: NotRequired[str | None]
    Amount: NotRequired[Decimal | None]
    Method: NotRequired[str | None]
    Created: NotRequired[dt.date | dt.datetime | None]
    Creator: NotRequired[str | None]
    CreatorID: NotRequired[str | None]
    BillID: NotRequired[str | None]
    Date: NotRequired[dt.date | dt.datetime | None]


class ShiftSession(TypedDict):
    """The register session behind a shift (DealPOS's page ends at ``ModifierName``)."""

    ID: NotRequired[str | None]
    RegisterID: NotRequired[str | None]
    UserID: NotRequired[str | None]
    UserName: NotRequired[str | None]
    EntityID: NotRequired[str | None]
    Start: NotRequired[dt.date | dt.datetime | None]
    End: NotRequired[dt.date | dt.datetime | None]
    Note: NotRequired[str | None]
    Number: NotRequired[str | None]
    Sales: NotRequired[Decimal | None]
    Tax: NotRequired[Decimal | None]
    Taxable: NotRequired[Decimal | None]
    TaxExempt: NotRequired[Decimal | None]
    Invoice_Count: NotRequired[int | None]
    LastNumber: NotRequired[str | None]
    InvoiceDateTypeID: NotRequired[int | None]
    TypeLabel: NotRequired[str | None]
    SalesNSurcharge: NotRequired[Decimal | None]
    Visitors: NotRequired[int | None]
    Surcharge: NotRequired[Decimal | None]
    ARAmount: NotRequired[Decimal | None]
    ARTransaction: NotRequired[Decimal | None]
    RegisterName: NotRequired[str | None]
    CreatorID: NotRequired[str | None]
    Created: NotRequired[dt.date | dt.datetime | None]
    ModifierID: NotRequired[str | None]
    Modified: NotRequired[dt.date | dt.datetime | None]
    CreatorName: NotRequired[str | None]
    ModifierName: NotRequired[str | None]


class ShiftClosed(TypedDict):
    """A closed shift (Close Shift)."""

    ID: NotRequired[str | None]
    Outlet: NotRequired[str | None]
    Register: NotRequired[str | None]
    Open: NotRequired[dt.date | dt.datetime | None]
    Close: NotRequired[dt.date | dt.datetime | None]
    Cashier: NotRequired[str | None]
    SalesNTax: NotRequired[Decimal | None]
    TotalInvoice: NotRequired[int | None]
    Visitor: NotRequired[int | None]
    Number: NotRequired[str | None]
    Session: NotRequired[ShiftSession | None]


class SalesOrderCustomer(TypedDict):
    """The customer of a sales order; these fields are required (may be empty)."""

    ID: NotRequired[str | None]
    Name: NotRequired[str | None]
    Email: NotRequired[str | None]
    Phone: NotRequired[str | None]
    Mobile: NotRequired[str | None]
    Code: NotRequired[str | None]
    Address: NotRequired[str | None]


class SalesOrderCreated(TypedDict):
    """A sales order turned into an invoice (Sales Order Created)."""

    ID: NotRequired[str | None]
    Outlet: NotRequired[str | None]
    Number: NotRequired[str | None]
    Date: NotRequired[dt.date | dt.datetime | None]
    DueDate: NotRequired[dt.date | dt.datetime | None]
    Tag: NotRequired[str | None]
    Customer: NotRequired[SalesOrderCustomer | None]
    CreatorID: NotRequired[str | None]
    Created: NotRequired[dt.date | dt.datetime | None]
    Discount1: NotRequired[Decimal | None]
    Discount2: NotRequired[Decimal | None]
    DiscountAmount: NotRequired[Decimal | None]
    Gross: NotRequired[Decimal | None]
    DiscountTotal: NotRequired[Decimal | None]
    TaxType: NotRequired[str | None]
    TaxCalculation: NotRequired[str | None]
    Tax: NotRequired[Decimal | None]
    TaxRate: NotRequired[Decimal | None]
    Sales: NotRequired[Decimal | None]
    Surcharge: NotRequired[Decimal | None]
    SalesNTax: NotRequired[Decimal | None]
    Coupon: NotRequired[str | None]
    CouponNote: NotRequired[str | None]
    Note: NotRequired[str | None]
    PointUsed: NotRequired[Decimal | None]
    PointsEarned: NotRequired[Decimal | None]
    Delivery: NotRequired[str | None]
    Void: NotRequired[str | None]
    Variants: NotRequired[list[dict[str, t.Any]] | None]
    OutboundLogistics: NotRequired[list[dict[str, t.Any]] | None]
    Payments: NotRequired[list[dict[str, t.Any]] | None]
    ReferenceNumber: NotRequired[str | None]
    OrderFulfillmentRecipient: NotRequired[dict[str, t.Any] | None]


#: ProductUpdated's payload.
ProductUpdated = ProductCreated
#: ProductDeleted's payload.
ProductDeleted = ProductCreated
#: ProductVariantCreated's payload.
ProductVariantCreated = dict[str, t.Any]
#: ProductVariantUpdated's payload.
ProductVariantUpdated = dict[str, t.Any]
#: InvoiceDeleted's payload.
InvoiceDeleted = InvoiceCreated
#: InvoiceErased's payload.
InvoiceErased = InvoiceCreated
#: BillCreated's payload.
BillCreated = dict[str, t.Any]
#: BillUpdated's payload.
BillUpdated = dict[str, t.Any]
#: BillDeleted's payload.
BillDeleted = dict[str, t.Any]
#: PaymentUpdated's payload.
PaymentUpdated = PaymentCreated
#: PaymentDeleted's payload.
PaymentDeleted = PaymentCreated
#: InvoiceWrittenOff's payload.
InvoiceWrittenOff = dict[str, t.Any]
#: SupplierBillWrittenOff's payload.
SupplierBillWrittenOff = dict[str, t.Any]
#: OutletCreated's payload.
OutletCreated = dict[str, t.Any]
#: OutletUpdated's payload.
OutletUpdated = dict[str, t.Any]
#: OutletDeleted's payload.
OutletDeleted = dict[str, t.Any]
