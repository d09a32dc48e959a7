"""Loyalty Point group: DealPOS's calls to an External Loyalty App, and our answers.

Requests are as lenient as the webhooks (unknown fields kept; phone numbers
kept as text even when sent as numbers). Answers are strict: they go to the
till, so a provider's mistake must be caught here, not there.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields
from marshmallow import validate

from .base import NON_EMPTY
from .base import BaseSchema
from .base import derive
from .base import nested
from .base import text
from .fields import DateOrDateTime
from .fields import Money
from .invoice import InvoiceSchema


class MemberPointsRequestSchema(BaseSchema):
    """Fetch member points: who is asking (every field required, may be empty)."""

    Outlet = text(required=True)
    Phone = text(required=True)
    Email = text(required=True)
    Code = text(required=True)


OrderCompleteRequestSchema = derive(
    InvoiceSchema,
    name="OrderCompleteRequestSchema",
    doc=(
        "Loyalty point on order complete: an invoice-like body (no field marked required). "
        "``ID`` is the key an order is answered once by: at most 200 characters."
    ),
    ID=text(max_length=200),
    Payment=text(),
    SalesType=text(),
)


class CouponCustomerSchema(BaseSchema):
    """The customer presenting a coupon."""

    Email = text()
    Phone = text()


class ValidateCouponRequestSchema(BaseSchema):
    """Validate a promotion coupon. ``Key`` (the coupon code) is required: without
    it there is nothing to validate."""

    Key = text(required=True, non_empty=True)
    Outlet = text()
    Customer = nested(CouponCustomerSchema)


class AnswerSchema(ma.Schema):
    """Base of our answers: nothing unknown, nothing missing."""

    class Meta:
        unknown = ma.RAISE


class MemberPointsAnswerSchema(AnswerSchema):
    """``{"Point": <number>}``"""

    Point = Money(required=True)


class OrderCompleteAnswerSchema(AnswerSchema):
    """``{"reward": <number>}``: points earned by the order."""

    reward = Money(required=True)


class CouponAnswerSchema(AnswerSchema):
    """A usable coupon (HTTP 200)."""

    Type = fields.String(required=True, validate=validate.OneOf(["percentageDiscount", "value"]))
    Amount = Money(required=True)
    status = fields.String(required=True, validate=validate.Equal("activated"))
    expiredAt = DateOrDateTime(required=True, allow_none=True)


class CouponRefusalSchema(AnswerSchema):
    """A coupon that cannot be used (HTTP 400)."""

    status = fields.String(required=True, validate=[NON_EMPTY, validate.NoneOf(["activated"])])
    expiredAt = DateOrDateTime(required=True, allow_none=True)
    Message = fields.String(required=True, validate=NON_EMPTY)
