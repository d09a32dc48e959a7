"""DealPOS's External Loyalty App: three calls the till waits for, and uses the answer.

Unlike webhooks these are request/response: the host app registers one
*provider* per call and returns plain values (or a small result object); the
library validates the answer and turns it into the JSON DealPOS expects::

    @posweb.loyalty.member_points
    def points(call):
        return shop.points_of(call.data["Phone"])          # -> {"Point": 1208}

    @posweb.loyalty.order_complete
    def reward(call):
        return call.data["Sales"] // 1000                    # -> {"reward": 9}

    @posweb.loyalty.validate_coupon
    def coupon(call):
        if used(call.data["Key"]):
            return CouponRefused("Coupon already used.")     # -> HTTP 400
        return Coupon("percentageDiscount", 10, expires_at=...)

.. versionadded:: 0.1
"""

from __future__ import annotations

from ..calls import CALLS
from ..calls import Coupon
from ..calls import CouponRefused
from ..calls import Loyalty
from ..calls import LoyaltyCall
from ..calls import LoyaltyCallType

__all__ = ["CALLS", "Coupon", "CouponRefused", "Loyalty", "LoyaltyCall", "LoyaltyCallType"]
