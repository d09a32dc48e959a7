"""The loyalty calls catalogue: the one list of DealPOS's loyalty calls, what a
provider may return, and the exact JSON DealPOS gets back.

Like :mod:`.events` for the webhooks, everything else is derived from
:data:`CALLS`: the URLs (:mod:`.loyalty.views` serves them), the OpenAPI
description, the CLI and the log page. Remembered answers are kept by the
store (:mod:`.inbox.answers`). Public names are re-exported by
:mod:`flask_posweb.loyalty`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import typing as t
from collections.abc import Callable
from collections.abc import Mapping

import marshmallow as ma

from .events import kebab
from .exceptions import ConfigurationError
from .exceptions import ProviderError
from .schemas import loyalty as schemas
from .schemas.loading import Loaded
from .schemas.loading import SchemaLoader

__all__ = [
    "CALLS",
    "Coupon",
    "CouponRefused",
    "Loyalty",
    "LoyaltyCall",
    "LoyaltyCallType",
    "Provider",
    "order_key",
]

Provider = Callable[["LoyaltyCall"], t.Any]
Number = int | decimal.Decimal | float


@dataclasses.dataclass(frozen=True)
class Coupon:
    """A usable coupon: the answer ``{"Type", "Amount", "status": "activated", "expiredAt"}``.

    :param type: ``"percentageDiscount"`` or ``"value"``.
    """

    type: t.Literal["percentageDiscount", "value"]
    amount: Number
    expires_at: dt.datetime | dt.date | None = None

    def answer(self) -> tuple[int, dict[str, t.Any]]:
        return 200, {
            "Type": self.type,
            "Amount": self.amount,
            "status": "activated",
            "expiredAt": self.expires_at,
        }


@dataclasses.dataclass(frozen=True)
class CouponRefused:
    """A coupon that cannot be used: HTTP 400 ``{"status", "expiredAt", "Message"}``.

    :param message: shown at the till.
    :param status: why, in DealPOS's words (``"used"``; ``"expired"``, ``"invalid"``...).
    """

    message: str
    status: str = "used"
    expires_at: dt.datetime | dt.date | None = None

    def answer(self) -> tuple[int, dict[str, t.Any]]:
        return 400, {"status": self.status, "expiredAt": self.expires_at, "Message": self.message}


@dataclasses.dataclass(frozen=True)
class LoyaltyCallType:
    """One of DealPOS's loyalty calls."""

    #: ``member_points``, ``order_complete`` or ``validate_coupon``; the decorator's name.
    name: str
    #: DealPOS's title.
    title: str
    request_schema: type[ma.Schema]
    #: The answer's schemas by HTTP status.
    answer_schemas: Mapping[int, type[ma.Schema]]
    #: The answer's key when the provider returns a plain number.
    number_key: str | None = None
    #: Answer each distinct request once and remember the answer (order complete).
    remembered: bool = False

    _loader: SchemaLoader = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The till needs these fields to work: their marks are always enforced.
        object.__setattr__(self, "_loader", SchemaLoader(self.request_schema))

    def load(self, body: t.Any, *, strict: bool = True) -> Loaded:
        """Validate a parsed request body.

        :raises marshmallow.ValidationError: with the messages per field.
        """
        return self._loader.load(body, strict=True)

    @property
    def endpoint(self) -> str:
        return f"loyalty_{self.name}"

    @property
    def url_rule(self) -> str:
        return f"/loyalty/{kebab(self.name)}"

    @property
    def decorator(self) -> str:
        return f"@posweb.loyalty.{self.name}"

    def shape(self, result: t.Any) -> tuple[int, dict[str, t.Any]]:
        """The provider's result as (HTTP status, JSON body), validated.

        :raises ProviderError: the result is not an answer DealPOS can use.
        """
        if hasattr(result, "answer"):
            status, body = result.answer()
        elif isinstance(result, Mapping):
            status, body = 200, dict(result)
        elif self.number_key is not None and not isinstance(result, (bool, str)):
            status, body = 200, {self.number_key: result}
        else:
            raise ProviderError(f"The {self.title} provider returned {type(result).__name__}.")
        schema = self.answer_schemas.get(status)
        try:
            if schema is None:
                raise ma.ValidationError(f"status {status} is not an answer of this call")
            schema().load(_jsonable(body))
        except ma.ValidationError as exc:
            raise ProviderError(
                f"The {self.title} provider's answer is invalid: {exc.messages}"
            ) from exc
        return status, _jsonable(body)


#: DealPOS's loyalty calls, by name.
CALLS: Mapping[str, LoyaltyCallType] = {
    call.name: call
    for call in (
        LoyaltyCallType(
            "member_points",
            "Fetch Loyalty Points",
            schemas.MemberPointsRequestSchema,
            {200: schemas.MemberPointsAnswerSchema},
            number_key="Point",
        ),
        LoyaltyCallType(
            "order_complete",
            "Loyalty Point On Order Complete",
            schemas.OrderCompleteRequestSchema,
            {200: schemas.OrderCompleteAnswerSchema},
            number_key="reward",
            remembered=True,
        ),
        LoyaltyCallType(
            "validate_coupon",
            "Validate Promotion Coupon",
            schemas.ValidateCouponRequestSchema,
            {200: schemas.CouponAnswerSchema, 400: schemas.CouponRefusalSchema},
        ),
    )
}


def order_key(data: Mapping[str, t.Any], raw: bytes) -> str:
    """What makes two calls the same order: its ``ID`` (at most 200 characters,
    checked by the schema), else the exact body."""
    order_id = data.get("ID")
    if order_id:
        return f"id:{order_id}"
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


def _jsonable(value: t.Any) -> t.Any:
    """Answers as JSON values: ``Decimal`` as a JSON *number* (Flask would write a
    string), dates as ISO 8601."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


@dataclasses.dataclass(frozen=True)
class LoyaltyCall:
    """One loyalty request, as handed to its provider."""

    #: The call's name (``member_points``...).
    name: str
    #: The validated body (unknown fields kept).
    data: dict[str, t.Any]
    #: The exact bytes received.
    raw: bytes
    #: Request headers, credentials removed.
    headers: Mapping[str, str]
    #: The merchant that called (``None``: the app's own credentials).
    #:
    #: .. versionadded:: 0.3
    merchant: str | None = None


class Loyalty:
    """The providers of one :class:`~flask_posweb.PosWeb`: one per call, registered
    with a decorator named after the call."""

    def __init__(self) -> None:
        self.providers: dict[str, Provider] = {}

    def _register(self, name: str, provider: Provider) -> Provider:
        if name in self.providers:
            raise ConfigurationError(
                f"'{CALLS[name].decorator}' already has a provider: "
                f"{self.providers[name].__qualname__}; register exactly one."
            )
        self.providers[name] = provider
        return provider

    def member_points(self, provider: Provider) -> Provider:
        """Register the provider of *Fetch Loyalty Points*: return the member's points."""
        return self._register("member_points", provider)

    def order_complete(self, provider: Provider) -> Provider:
        """Register the provider of *Loyalty Point On Order Complete*: return the
        points the order earns. Called once per order."""
        return self._register("order_complete", provider)

    def validate_coupon(self, provider: Provider) -> Provider:
        """Register the provider of *Validate Promotion Coupon*: return a
        :class:`Coupon` or a :class:`CouponRefused`."""
        return self._register("validate_coupon", provider)
