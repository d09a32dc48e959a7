"""Serving the loyalty calls: one view per call, a time budget, remembered answers.

A provider gets ``POSWEB_LOYALTY_TIME_BUDGET`` seconds (DealPOS gives up after
30 s): past it, DealPOS is answered 503 and retries. Order complete is
answered once per order (see :mod:`flask_posweb.inbox.answers`).

.. versionadded:: 0.1
"""

from __future__ import annotations

import json
import logging
import threading
import time
import typing as t
from collections.abc import Callable

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import request

from .. import signals
from ..calls import CALLS
from ..calls import Loyalty
from ..calls import LoyaltyCall
from ..calls import LoyaltyCallType
from ..calls import Provider
from ..calls import order_key
from ..dispatch.owners import new_owner
from ..dispatch.receivers import notify
from ..exceptions import NoProviderError
from ..exceptions import ProviderError
from ..exceptions import UnavailableError
from ..exceptions import WebhookError
from ..headers import redact
from ..payload import validated
from ..state import PosWebState
from ..web.guard import authenticated_post
from ..web.guard import read_body

if t.TYPE_CHECKING:
    from ..inbox.answers import Answers

__all__ = ["register_loyalty_views", "run_within"]

logger = logging.getLogger("flask_posweb")

Answer = tuple[int, dict[str, t.Any]]


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

    def view(merchant: str | None = None) -> Response:
        state, sender = authenticated_post(merchant)
        raw = read_body(state.settings.max_content_length)
        data = validated(call_type, raw, request.mimetype).data
        provider = loyalty.providers.get(call_type.name)
        if provider is None:
            raise NoProviderError(call_type.title, call_type.decorator)
        headers = redact(request.headers, state.settings.hidden_headers)
        call = LoyaltyCall(call_type.name, data, raw, headers, sender)
        notify(signals.loyalty_requested, state.app, call=call, merchant=sender)
        try:
            if call_type.remembered and state.inbox is not None:
                status, body, replayed = _remembered(
                    state, state.inbox.answers, call_type, call, provider
                )
            else:
                status, body = call_type.shape(_run(state, call, provider))
                replayed = False
        except WebhookError as exc:
            logger.error(
                "Loyalty %s not answered: %s", call.name, exc.message, exc_info=exc.__cause__
            )
            notify(signals.loyalty_failed, state.app, call=call, error=exc, merchant=sender)
            raise
        notify(
            signals.loyalty_answered,
            state.app,
            call=call,
            status=status,
            answer=body,
            replayed=replayed,
            merchant=sender,
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


def _remembered(
    state: PosWebState,
    memory: Answers,
    call_type: LoyaltyCallType,
    call: LoyaltyCall,
    provider: Provider,
) -> tuple[int, dict[str, t.Any], bool]:
    """Answer a call once per order; a repeat gets the remembered answer
    without calling the provider again.

    The answer is leased while the provider runs, for longer than DealPOS waits
    before retrying, so its retry waits for this answer instead of asking the
    provider a second time. A provider that failed is asked again.
    """
    settings = state.settings
    owner, lease = new_owner("loyalty"), settings.loyalty_time_budget + 60
    key = order_key(call.data, call.raw)
    answer_id, found = memory.take(
        call.merchant, call.name, key, call.raw, call.headers, owner, lease
    )
    if answer_id is None:
        answer = _wait_for_answer(memory, call, key, settings.loyalty_time_budget)
        if answer is None:
            raise UnavailableError(
                "This order is still being answered; retry.", settings.retry_after
            )
        return 200, answer, True

    def settle(result: t.Any, error: BaseException | None) -> Answer:
        """Remember the outcome; a failure is remembered as such, and raised."""
        try:
            if error is not None:
                raise error
            status, body = call_type.shape(result)
        except ProviderError as exc:
            memory.settle(answer_id, owner, "failed", errors={"_provider": [exc.message]})
            raise
        memory.settle(answer_id, owner, "answered", answer=body)
        return status, body

    def settle_late(result: t.Any, error: BaseException | None) -> None:
        try:
            settle(result, error if error is None else ProviderError(repr(error)))
            logger.info("Loyalty %s: late answer remembered (order %s)", call.name, key)
        except Exception:
            logger.exception("Loyalty %s: late provider failure (order %s)", call.name, key)

    try:
        result = _run(state, call, provider, on_late=settle_late)
    except ProviderError as exc:
        settle(None, exc)  # remembers the failure and raises it
        raise
    return (*settle(result, None), False)


def _wait_for_answer(
    memory: Answers, call: LoyaltyCall, key: str, budget: float
) -> dict[str, t.Any] | None:
    deadline = time.monotonic() + budget
    while True:
        found = memory.get(call.merchant, call.name, key)
        if found is not None and found.status == "answered":
            return found.answer
        if found is None or found.status == "failed" or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def register_loyalty_views(bp: Blueprint, loyalty: Loyalty) -> None:
    """Add one ``POST`` endpoint per loyalty call to ``bp``."""
    for call_type in CALLS.values():
        bp.add_url_rule(
            call_type.url_rule,
            view_func=loyalty_view(call_type, loyalty),
            methods=["POST"],
            provide_automatic_options=False,
        )
