"""marshmallow schemas for every DealPOS body, one module per resource family.

Every schema keeps unknown fields (see :class:`~.base.BaseSchema`); field
names are DealPOS's own. None of these modules imports Flask.
"""

from __future__ import annotations

from .base import BaseSchema
from .base import OpenSchema
from .contact import CustomerDeletedSchema
from .contact import CustomerSchema
from .contact import LogisticContactSchema
from .contact import SupplierDeletedSchema
from .contact import SupplierSchema
from .fields import parse_pos_datetime
from .inventory import AdjustmentSchema
from .inventory import InboundLogisticSchema
from .inventory import OutboundLogisticSchema
from .inventory import TransferOrderSchema
from .invoice import InvoiceCustomerSchema
from .invoice import InvoiceSchema
from .invoice import SalesOrderSchema
from .payment import BillPaymentDeletedSchema
from .payment import BillPaymentSchema
from .payment import InvoicePaymentSchema
from .payment import PaymentWriteOffSchema
from .product import ProductSchema
from .shift import ShiftSchema

__all__ = [
    "AdjustmentSchema",
    "BaseSchema",
    "BillPaymentDeletedSchema",
    "BillPaymentSchema",
    "CustomerDeletedSchema",
    "CustomerSchema",
    "InboundLogisticSchema",
    "InvoiceCustomerSchema",
    "InvoicePaymentSchema",
    "InvoiceSchema",
    "LogisticContactSchema",
    "OpenSchema",
    "OutboundLogisticSchema",
    "PaymentWriteOffSchema",
    "ProductSchema",
    "SalesOrderSchema",
    "ShiftSchema",
    "SupplierDeletedSchema",
    "SupplierSchema",
    "TransferOrderSchema",
    "parse_pos_datetime",
]
