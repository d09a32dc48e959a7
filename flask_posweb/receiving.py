"""One authenticated delivery, from bytes to answer: parse, validate, store, dispatch.

The order is the guarantee. Nothing is acknowledged before it is committed;
a rejected body is kept before it is refused; receivers run only after the
commit, so a crash in one of them loses nothing.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import typing as t

from . import signals
from .dispatch import call_receivers
from .dispatch import notify
from .dispatch import webhook_event
from .events import EventType
from .events import WebhookEvent
from .exceptions import ReceiverError
from .exceptions import StoreError
from .exceptions import WebhookError
from .headers import RedactedHeaders
from .headers import redact
from .inbox import Delivery
from .payload import validated
from .runner import new_owner

if t.TYPE_CHECKING:
    from .state import PosWebState
    from .verification import Headers

__all__ = ["receive"]

logger = logging.getLogger("flask_posweb")


def receive(
    state: PosWebState,
    event_type: EventType,
    raw: bytes,
    headers: Headers,
    mimetype: str | None,
) -> int | None:
    """Take one authenticated delivery; return its inbox id (``None`` without an inbox).

    :raises WebhookError: the answer to send instead of 200.
    """
    kept = redact(headers, state.settings.hidden_headers)
    try:
        data = validated(event_type, raw, mimetype)
    except WebhookError as exc:
        _keep_rejected(state, event_type, raw, kept, exc)
        raise
    if state.inbox is None:
        _run_unstored(state, WebhookEvent(event_type.name, data, raw, headers=kept))
        return None
    inline = state.settings.dispatch == "inline"
    owner = new_owner("request") if inline else None
    # A StoreError here is answered 503 by the blueprint: DealPOS retries.
    admission = state.inbox.admit(
        event_type.name, raw, dict(kept), owner=owner, lease=state.settings.lease
    )
    delivery = admission.delivery
    if admission.new:
        logger.info("%s accepted (id=%s)", event_type.name, delivery.id)
        notify(signals.webhook_received, state.app, event=webhook_event(delivery, data))
        if owner is not None:
            _dispatch_inline(state, delivery, owner, data)
        elif state.background is not None:
            state.background.wake()
    else:
        _repeat(state, delivery, data)
    return delivery.id


def _keep_rejected(
    state: PosWebState,
    event_type: EventType,
    raw: bytes,
    headers: RedactedHeaders,
    exc: WebhookError,
) -> None:
    """Store a refused body with its errors before refusing it.

    If it cannot be stored, the StoreError replaces the refusal: a 4xx is
    final for DealPOS, a 503 makes it retry, so nothing is lost.
    """
    if state.inbox is None:
        return
    errors = exc.stored_errors()
    exc.delivery_id = state.inbox.reject(event_type.name, raw, dict(headers), errors).id
    logger.warning("%s rejected (id=%s): %s", event_type.name, exc.delivery_id, errors)


def _run_unstored(state: PosWebState, event: WebhookEvent) -> None:
    """Without an inbox, receivers run in the request; a failure is a 500 so DealPOS retries."""
    notify(signals.webhook_received, state.app, event=event)
    failed = [o.receiver for o in call_receivers(state.app, event) if not o.ok]
    if failed:
        raise ReceiverError(failed)
    logger.info("%s accepted", event.name)
    notify(signals.webhook_processed, state.app, event=event)


def _dispatch_inline(
    state: PosWebState, delivery: Delivery, owner: str, data: dict[str, t.Any] | None
) -> None:
    """Run the receivers now. The delivery is committed already, so whatever
    happens here the answer stays 200: failures are retried by us."""
    assert state.dispatcher is not None
    try:
        state.dispatcher.run(delivery, owner, data)
    except Exception:
        logger.exception(
            "Delivery %s: dispatch failed; its lease will expire and it is retried", delivery.id
        )
    if state.background is not None:
        state.background.ensure_started()


def _repeat(state: PosWebState, delivery: Delivery, data: dict[str, t.Any]) -> None:
    """DealPOS sent a body already stored (its own retry, or a duplicate).

    Processed or in hand: nothing more to do. Failed or dead: retry it now.
    Rejected before, valid now (a schema or config fix): dispatch it.
    """
    assert state.inbox is not None
    logger.info("%s repeated (id=%s, %s)", delivery.event, delivery.id, delivery.status)
    if delivery.status in ("processed", "pending"):
        return
    try:
        if not state.inbox.retry_now(delivery.id):
            return
        if state.settings.dispatch == "inline":
            owner = new_owner("request")
            claimed = state.inbox.claim(delivery.id, owner, state.settings.lease)
            if claimed is not None:
                _dispatch_inline(state, claimed, owner, data)
                return
    except StoreError as exc:
        # Stored already: the background dispatcher retries it once the store is back.
        logger.warning("Delivery %s: retry not started: %s", delivery.id, exc)
    if state.background is not None:
        state.background.wake()
