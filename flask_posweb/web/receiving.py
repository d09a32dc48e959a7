"""One authenticated delivery, from bytes to answer: parse, validate, store, dispatch.

The order is the guarantee. Nothing is acknowledged before it is committed;
a rejected body is kept before it is refused; receivers run only after the
commit, so a crash in one of them loses nothing. Where they run is the
dispatch mode's business (:mod:`~flask_posweb.dispatch.modes`).

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import typing as t

from .. import signals
from .. import tracing
from ..dispatch.dispatcher import webhook_event
from ..dispatch.owners import new_owner
from ..dispatch.receivers import call_receivers
from ..dispatch.receivers import named_receivers
from ..dispatch.receivers import notify
from ..dispatch.receivers import receiver_set
from ..events import EventType
from ..events import WebhookEvent
from ..exceptions import ReceiverError
from ..exceptions import UnsupportedMediaTypeError
from ..exceptions import WebhookError
from ..headers import Headers
from ..headers import RedactedHeaders
from ..headers import redact
from ..inbox import Deadline
from ..payload import validated
from ..state import PosWebState

__all__ = ["receive"]

logger = logging.getLogger("flask_posweb")


def receive(
    state: PosWebState,
    event_type: EventType,
    raw: bytes,
    headers: Headers,
    mimetype: str | None,
    *,
    merchant: str | None = None,
) -> int | None:
    """Take one authenticated delivery; return its inbox id (``None`` without an inbox).

    :param merchant: who sent it (``None``: the app's own credentials).

    :raises WebhookError: the answer to send instead of 200.
    :raises StoreError: the inbox could not commit it (answered 503).
    """
    settings = state.settings
    kept = redact(headers, settings.hidden_headers)
    # One deadline for every wait on the store in this request.
    deadline = Deadline(settings.database_timeout)
    try:
        with tracing.span("posweb.validate", {"posweb.event": event_type.name}):
            _check_encoding(headers)
            loaded = validated(event_type, raw, mimetype, strict=settings.strict_presence)
    except WebhookError as exc:
        _keep_rejected(state, event_type, raw, kept, exc, deadline, merchant)
        raise
    if state.inbox is None or state.dispatch is None:
        event = WebhookEvent(
            event_type.name,
            loaded.data,
            raw,
            headers=kept,
            missing=loaded.missing,
            merchant=merchant,
        )
        _run_unstored(state, event)
        return None
    dispatch = state.dispatch
    mode = dispatch.mode
    with tracing.span("posweb.store", {"posweb.event": event_type.name}) as stored:
        admission = state.inbox.admit(
            event_type.name,
            raw,
            kept,
            receivers=receiver_set(event_type.signal, state.app, event_type.name),
            merchant=merchant,
            resource=event_type.resource(loaded.data),
            missing=loaded.missing,
            owner=new_owner("request") if mode.leases_at_store else None,
            lease=settings.lease,
            enqueued=mode.enqueues_at_store,
            deadline=deadline,
        )
        stored.set("posweb.delivery.id", admission.delivery.id)
        stored.set("posweb.duplicate", not admission.new)
    delivery = admission.delivery
    if not admission.new:
        logger.info("%s repeated (id=%s, %s)", event_type.name, delivery.id, delivery.status)
        notify(
            signals.webhook_repeated,
            state.app,
            event_name=event_type.name,
            delivery_id=delivery.id,
            merchant=merchant,
        )
        dispatch.repeated(delivery, loaded)
        return delivery.id
    logger.info("%s accepted (id=%s)", event_type.name, delivery.id)
    event = webhook_event(delivery, loaded.data, loaded.missing)
    notify(signals.webhook_received, state.app, event=event, merchant=merchant)
    if loaded.missing:
        logger.warning(
            "%s accepted without marked fields (id=%s): %s",
            event_type.name,
            delivery.id,
            ", ".join(loaded.missing),
        )
        notify(
            signals.webhook_incomplete,
            state.app,
            event=event,
            missing=loaded.missing,
            merchant=merchant,
        )
    dispatch.stored(delivery, loaded)
    return delivery.id


def _check_encoding(headers: Headers) -> None:
    """Bodies are taken as sent: a compressed one would pass the size limit
    compressed and grow after it."""
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaTypeError(
            None, f"Content-Encoding {encoding!r} is not accepted; send the JSON as it is."
        )


def _keep_rejected(
    state: PosWebState,
    event_type: EventType,
    raw: bytes,
    headers: RedactedHeaders,
    exc: WebhookError,
    deadline: Deadline,
    merchant: str | None,
) -> None:
    """Store a refused body with its errors before refusing it.

    If it cannot be stored, the StoreError replaces the refusal: a 4xx is
    final for DealPOS, a 503 makes it retry, so nothing is lost.
    """
    if state.inbox is None:
        return
    errors = exc.stored_errors()
    with tracing.span("posweb.store", {"posweb.event": event_type.name}) as stored:
        kept = state.inbox.reject(
            event_type.name, raw, headers, errors, merchant=merchant, deadline=deadline
        )
        stored.set("posweb.delivery.id", kept.id)
    exc.delivery_id = kept.id
    logger.warning("%s rejected (id=%s): %s", event_type.name, kept.id, errors)


def _run_unstored(state: PosWebState, event: WebhookEvent[t.Any]) -> None:
    """Without an inbox, receivers run in the request; a failure is a 500 so DealPOS retries."""
    notify(signals.webhook_received, state.app, event=event, merchant=event.merchant)
    receivers = named_receivers(event.type.signal, state.app)
    failed = [o.receiver for o in call_receivers(state.app, event, receivers) if not o.ok]
    if failed:
        raise ReceiverError(failed)
    logger.info("%s accepted", event.name)
    notify(signals.webhook_processed, state.app, event=event, merchant=event.merchant)
