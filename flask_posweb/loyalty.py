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

A provider gets ``POSWEB_LOYALTY_TIME_BUDGET`` seconds (DealPOS gives up after
30 s): past it, DealPOS is answered 503 and retries. Order complete is
idempotent: its reward is computed once per order and remembered in the inbox.

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import json
import logging
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Mapping

import marshmallow as ma
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import request

from . import signals
from .dispatch import notify
from .events import kebab
from .exceptions import ConfigurationError
from .exceptions import NoProviderError
from .exceptions import ProviderError
from .exceptions import UnavailableError
from .exceptions import WebhookError
from .guard import ROUTED_METHODS
from .guard import read_body
from .guard import require_post
from .headers import redact
from .inbox import Delivery
from .inbox import Inbox
from .payload import validated
from .runner import new_owner
from .schemas import loyalty as schemas
from .schemas.compiled import CompiledSchema

if t.TYPE_CHECKING:
    from .state import PosWebState

__all__ = ["CALLS", "Coupon", "CouponRefused", "Loyalty", "LoyaltyCall", "LoyaltyCallType"]

logger = logging.getLogger("flask_posweb")

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

    _loader: CompiledSchema = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_loader", CompiledSchema(self.request_schema()))

    def load(self, body: t.Any) -> dict[str, t.Any]:
        """Validate a parsed request body.

        :raises marshmallow.ValidationError: with the messages per field.
        """
        return t.cast(dict[str, t.Any], self._loader.load(body))

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


def run_within(
    app: Flask,
    provider: Provider,
    call: LoyaltyCall,
    budget: float,
    retry_after: int,
    on_late: Callable[[t.Any, BaseException | None], None] | None = None,
) -> t.Any:
    """Run ``provider(call)`` in its own thread for at most ``budget`` seconds.

    A provider cannot be interrupted, so past the budget it runs on; when it
    ends, ``on_late(result, error)`` gets its outcome (to remember it).

    :raises UnavailableError: the budget ran out (DealPOS retries after a 503).
    :raises ProviderError: the provider raised.
    """
    outcome: dict[str, t.Any] = {}
    lock, done = threading.Lock(), threading.Event()

    def target() -> None:
        with app.app_context():
            try:
                outcome["result"] = app.ensure_sync(provider)(call)
            except Exception as exc:
                outcome["error"] = exc
        with lock:
            done.set()
            late = outcome.get("late", False)
        if late and on_late is not None:
            on_late(outcome.get("result"), outcome.get("error"))

    threading.Thread(target=target, name=f"posweb-{call.name}", daemon=True).start()
    done.wait(budget)
    with lock:
        if not done.is_set():
            outcome["late"] = True
            raise UnavailableError(
                f"The loyalty provider took longer than {budget:g} s.", retry_after
            )
    if "error" in outcome:
        raise ProviderError(f"The {call.name} provider failed.") from outcome["error"]
    return outcome["result"]


def loyalty_view(call_type: LoyaltyCallType, loyalty: Loyalty) -> Callable[[], Response]:
    """The view of ``POST <prefix>/loyalty/<call>``: answer one loyalty call."""

    def view() -> Response:
        state = require_post()
        raw = read_body(state.settings.max_content_length)
        data = validated(call_type, raw, request.mimetype)
        provider = loyalty.providers.get(call_type.name)
        if provider is None:
            raise NoProviderError(call_type.title, call_type.decorator)
        headers = redact(request.headers, state.settings.hidden_headers)
        call = LoyaltyCall(call_type.name, data, raw, headers)
        notify(signals.loyalty_requested, state.app, call=call)
        try:
            if call_type.remembered and state.inbox is not None:
                status, body, replayed = _remembered(state, state.inbox, call_type, call, provider)
            else:
                status, body = _answer(state, call_type, call, provider)
                replayed = False
        except WebhookError as exc:
            logger.error(
                "Loyalty %s not answered: %s", call.name, exc.message, exc_info=exc.__cause__
            )
            notify(signals.loyalty_failed, state.app, call=call, error=exc)
            raise
        notify(
            signals.loyalty_answered,
            state.app,
            call=call,
            status=status,
            answer=body,
            replayed=replayed,
        )
        return Response(json.dumps(body), status=status, mimetype="application/json")

    view.__name__ = view.__qualname__ = call_type.endpoint
    return view


def _run(
    state: PosWebState,
    call: LoyaltyCall,
    provider: Provider,
    on_late: Callable[[t.Any, BaseException | None], None] | None = None,
) -> t.Any:
    settings = state.settings
    return run_within(
        state.app, provider, call, settings.loyalty_time_budget, settings.retry_after, on_late
    )


def _answer(
    state: PosWebState, call_type: LoyaltyCallType, call: LoyaltyCall, provider: Provider
) -> tuple[int, dict[str, t.Any]]:
    return call_type.shape(_run(state, call, provider))


def _remembered(
    state: PosWebState,
    inbox: Inbox,
    call_type: LoyaltyCallType,
    call: LoyaltyCall,
    provider: Provider,
) -> tuple[int, dict[str, t.Any], bool]:
    """Answer a call once per request key (the order's ``ID``, else the body's
    hash); a repeat gets the remembered answer without calling the provider.

    The row is leased while the provider runs, for longer than DealPOS waits
    before retrying, so its retry waits for this answer instead of asking the
    provider a second time. A provider that failed is asked again.
    """
    settings = state.settings
    owner, lease = new_owner("loyalty"), settings.loyalty_time_budget + 60
    key = str(call.data.get("ID") or "") or hashlib.sha256(call.raw).hexdigest()
    admission = inbox.admit(
        call_type.endpoint,
        call.raw,
        dict(call.headers),
        owner=owner,
        lease=lease,
        key=key,
        dispatch=False,
    )
    leased: Delivery | None = admission.delivery
    if not admission.new:
        leased = inbox.claim(admission.delivery.id, owner, lease, ("pending", "failed"))
    if leased is None:  # answered already, or being answered right now
        answer = _wait_for_answer(inbox, admission.delivery.id, settings.loyalty_time_budget)
        if answer is None:
            raise UnavailableError(
                "This order is still being answered; retry.", settings.retry_after
            )
        return 200, answer, True
    delivery = leased

    def settle(result: t.Any, error: BaseException | None) -> tuple[int, dict[str, t.Any]]:
        """Remember the outcome; a failure is remembered as such, and raised."""
        try:
            if error is not None:
                raise error
            status, body = call_type.shape(result)
        except ProviderError as exc:
            inbox.finish(delivery, owner, (), "failed", errors={"_provider": [exc.message]})
            raise
        inbox.finish(delivery, owner, (), "processed", answer=body)
        return status, body

    def settle_late(result: t.Any, error: BaseException | None) -> None:
        try:
            settle(result, error if error is None else ProviderError(repr(error)))
            logger.info("Loyalty %s: late answer remembered (id=%s)", call.name, delivery.id)
        except Exception:
            logger.exception("Loyalty %s: late provider failure (id=%s)", call.name, delivery.id)

    try:
        result = _run(state, call, provider, on_late=settle_late)
    except ProviderError as exc:
        settle(None, exc)  # remembers the failure and raises it
        raise
    return (*settle(result, None), False)


def _wait_for_answer(inbox: Inbox, delivery_id: int, budget: float) -> dict[str, t.Any] | None:
    deadline = time.monotonic() + budget
    while True:
        delivery = inbox.get(delivery_id)
        if delivery is not None and delivery.status == "processed":
            return t.cast(dict[str, t.Any], delivery.answer)
        if delivery is None or delivery.locked_by is None or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def register_loyalty_views(bp: Blueprint, loyalty: Loyalty) -> None:
    """Add one endpoint per loyalty call to ``bp``."""
    for call_type in CALLS.values():
        bp.add_url_rule(
            call_type.url_rule,
            view_func=loyalty_view(call_type, loyalty),
            methods=ROUTED_METHODS,
            provide_automatic_options=False,
        )
