"""Customer and Supplier groups: contacts.

Both pages mark nearly every field required and non-empty. Their ``Gender``
differs: a number for customers, text for suppliers (as DealPOS sends them).
"""

from __future__ import annotations

from .base import BaseSchema
from .base import count
from .base import datetime
from .base import derive
from .base import text


class CustomerSchema(BaseSchema):
    """A customer (Customer Created)."""

    FirstName = text(required=True, non_empty=True)
    LastName = text(required=True, non_empty=True)
    Title = text(required=True, non_empty=True)
    Birthdate = datetime(required=True, non_empty=True)
    Phone = text(required=True, non_empty=True)
    Email = text(required=True, non_empty=True)
    Gender = count(required=True)
    Outlet = text(required=True, non_empty=True)
    Name = text(required=True, non_empty=True)
    Code = text(required=True)
    Address = text(required=True, non_empty=True)
    City = text(required=True, non_empty=True)
    Mobile = text(required=True, non_empty=True)
    MemberIdentification = text(required=True, non_empty=True)


CustomerDeletedSchema = derive(
    CustomerSchema,
    name="CustomerDeletedSchema",
    doc=(
        "A deleted customer. Only ``FirstName`` was seen marked on DealPOS's page; the "
        "other Customer Created fields are typed the same but optional."
    ),
    optional=[name for name in CustomerSchema._declared_fields if name != "FirstName"],
)


class SupplierSchema(BaseSchema):
    """A supplier (Supplier Created)."""

    FirstName = text(required=True, non_empty=True)
    LastName = text(required=True, non_empty=True)
    Title = text()
    Phone = text(required=True, non_empty=True)
    Email = text(required=True, non_empty=True)
    Gender = text(required=True, non_empty=True)
    Name = text(required=True, non_empty=True)
    Code = text(required=True, non_empty=True)
    Address = text(required=True, non_empty=True)
    Mobile = text(required=True, non_empty=True)


SupplierDeletedSchema = derive(
    SupplierSchema,
    name="SupplierDeletedSchema",
    doc="A deleted supplier; DealPOS's page ends inside ``Address`` (``Mobile`` unseen).",
    optional=("Address", "Mobile"),
)

LogisticContactSchema = derive(
    SupplierSchema,
    name="LogisticContactSchema",
    doc="The customer or supplier of a logistic: a supplier's fields without ``Mobile``.",
    optional=("Mobile",),
)
