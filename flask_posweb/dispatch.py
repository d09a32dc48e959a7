"""Running receivers: each one isolated, each outcome recorded.

blinker's ``send`` stops at the first receiver that raises; here every
receiver runs, each failure is logged with its traceback and signalled, and
the outcomes go to the inbox so that a retry re-runs only the receivers that
failed (octokit/webhooks does the same with its handlers).

.. versionadded:: 0.1
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import time
import traceback
import typing as t
import weakref
from collections.abc import Callable
from collections.abc import Container

from blinker import NamedSignal

from . import signals
from .events import EVENTS
from .events import WebhookEvent
from .exceptions import WebhookError
from .headers import RedactedHeaders
from .inbox import Attempt
from .inbox import Delivery
from .inbox import Inbox
from .inbox import Status
from .inbox import utcnow
from .payload import validated

if t.TYPE_CHECKING:
    from flask import Flask

    from .config import Settings

__all__ = ["Dispatcher", "call_receivers", "notify", "receiver_name", "webhook_event"]

logger = logging.getLogger("flask_posweb")


def receiver_name(receiver: t.Callable[..., t.Any]) -> str:
    """A name for a receiver that is the same in every process: ``module.qualname``."""
    module = getattr(receiver, "__module__", None) or type(receiver).__module__
    qualname = getattr(receiver, "__qualname__", None) or type(receiver).__qualname__
    return f"{module}.{qualname}"


#: Name and async-ness of each receiver seen, so that neither is worked out
#: again on every delivery (``inspect`` is slow for a hot path).
_DESCRIBED: weakref.WeakKeyDictionary[t.Callable[..., t.Any], tuple[str, bool]] = (
    weakref.WeakKeyDictionary()
)


def _describe(receiver: t.Callable[..., t.Any]) -> tuple[str, bool]:
    try:
        return _DESCRIBED[receiver]
    except (KeyError, TypeError):
        pass
    described = (receiver_name(receiver), inspect.iscoroutinefunction(receiver))
    try:
        _DESCRIBED[receiver] = described
    except TypeError:  # not weakly referenceable: described again next time
        pass
    return described


def _receivers(signal: NamedSignal, app: Flask) -> t.Iterator[tuple[str, t.Callable[..., t.Any]]]:
    """The signal's receivers for ``app``, each with a name unique within the signal,
    ready to call (``async`` ones wrapped as Flask does for views)."""
    if signal.is_muted or not signal.receivers:
        return
    seen: set[str] = set()
    for receiver in signal.receivers_for(app):
        name, is_async = _describe(receiver)
        if name in seen:  # the same function connected twice, or two lambdas
            base, number = name, 2
            while (name := f"{base}#{number}") in seen:
                number += 1
        seen.add(name)
        yield name, app.ensure_sync(receiver) if is_async else receiver


def notify(signal: NamedSignal, app: Flask, **kwargs: t.Any) -> None:
    """Send a lifecycle signal; a receiver that raises is logged, never propagated."""
    if not signal.receivers:
        return
    for name, receiver in _receivers(signal, app):
        try:
            receiver(app, **kwargs)
        except Exception:
            logger.exception("Receiver %s of signal %r failed", name, signal.name)


def call_receivers(
    app: Flask,
    event: WebhookEvent,
    *,
    generation: int = 0,
    skip: Container[str] = (),
    before_each: Callable[[], None] | None = None,
) -> list[Attempt]:
    """Call every receiver of the event's signal for ``app``, except those in ``skip``.

    :returns: one :class:`~flask_posweb.inbox.Attempt` per receiver called.
    """
    outcomes = []
    for name, receiver in _receivers(event.type.signal, app):
        if name in skip:
            continue
        if before_each is not None:
            before_each()
        started, clock = utcnow(), time.perf_counter()
        error = None
        try:
            receiver(app, event=event)
        except Exception as exc:
            error = traceback.format_exc()
            logger.exception(
                "Receiver %s failed on %s (delivery %s, attempt %s)",
                name,
                event.name,
                event.id,
                event.attempt,
            )
            notify(signals.receiver_failed, app, event=event, receiver=name, error=exc)
        elapsed = (time.perf_counter() - clock) * 1000
        outcomes.append(
            Attempt(name, event.attempt, generation, error is None, error, started, elapsed)
        )
    return outcomes


def webhook_event(delivery: Delivery, data: dict[str, t.Any]) -> WebhookEvent:
    """The event handed to receivers for a stored delivery."""
    return WebhookEvent(
        name=delivery.event,
        data=data,
        raw=delivery.raw,
        id=delivery.id,
        attempt=max(delivery.attempts, 1),
        is_replay=delivery.replay,
        received_at=delivery.received_at.replace(tzinfo=dt.timezone.utc),
        headers=RedactedHeaders(delivery.headers),
    )


class Dispatcher:
    """Dispatches stored deliveries of one app and decides what comes next.

    :param app: the sender of every signal.
    """

    def __init__(self, app: Flask, inbox: Inbox, settings: Settings) -> None:
        self.app = app
        self.inbox = inbox
        self.settings = settings

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt``: doubled each time, capped."""
        delay = self.settings.retry_backoff * 2 ** (attempt - 1)
        return float(min(delay, self.settings.retry_max_delay))

    def run(self, delivery: Delivery, owner: str, data: dict[str, t.Any] | None = None) -> Status:
        """Run the receivers of a delivery leased to ``owner``; record and return its status.

        :param data: the validated body when the caller has it already (the
            request); otherwise the stored raw body is validated again, so a
            schema fix applies to retries and replays.
        """
        event_type = EVENTS.get(delivery.event)
        if event_type is None:
            return self._reject(delivery, owner, {"_event": [f"Unknown event {delivery.event!r}."]})
        if data is None:
            try:
                data = validated(event_type, delivery.raw)
            except WebhookError as exc:
                return self._reject(delivery, owner, exc.stored_errors())
        event = webhook_event(delivery, data)
        first = delivery.attempts <= 1 and delivery.generation == 0 and not delivery.replay
        outcomes = call_receivers(
            self.app,
            event,
            generation=delivery.generation,
            skip=() if first else self.inbox.succeeded(delivery),
            before_each=self._keep_lease(delivery, owner),
        )
        return self._finish(delivery, owner, event, outcomes)

    def _keep_lease(self, delivery: Delivery, owner: str) -> Callable[[], None]:
        """Before each receiver: renew the lease once less than half of it is left.

        Not on every receiver: that would be a write each. The clock starts at
        the lease, not at this dispatch: a worker leases a batch at once.
        """
        lease = self.settings.lease
        granted = (delivery.locked_until or utcnow()) - utcnow()
        expires = [time.monotonic() + granted.total_seconds()]

        def renew() -> None:
            if expires[0] - time.monotonic() < lease / 2:
                if not self.inbox.extend(delivery.id, owner, lease):
                    logger.warning("Delivery %s: lease lost before a receiver ran", delivery.id)
                expires[0] = time.monotonic() + lease

        return renew

    def _finish(
        self, delivery: Delivery, owner: str, event: WebhookEvent, outcomes: list[Attempt]
    ) -> Status:
        failed = [o.receiver for o in outcomes if not o.ok]
        status: Status
        next_attempt_at = None
        if not failed:
            status = "processed"
        elif delivery.attempts >= self.settings.max_attempts:
            status = "dead"
        else:
            status = "failed"
            next_attempt_at = utcnow() + dt.timedelta(seconds=self.backoff(delivery.attempts))
        # Not durable: a crash that loses this write only runs the delivery
        # again (at least once), and sparing a disk sync per delivery matters.
        recorded = self.inbox.finish(
            delivery, owner, outcomes, status, next_attempt_at=next_attempt_at, durable=False
        )
        if not recorded:
            logger.warning(
                "Delivery %s: lease lost while dispatching; another dispatcher took it over",
                delivery.id,
            )
        if status == "processed":
            notify(signals.webhook_processed, self.app, event=event)
        elif status == "dead":
            logger.error(
                "Delivery %s (%s) is dead after %s attempts; replay it with "
                "'flask posweb replay %s'",
                delivery.id,
                delivery.event,
                delivery.attempts,
                delivery.id,
            )
            notify(signals.webhook_dead, self.app, event=event, failed=failed)
        return status

    def _reject(self, delivery: Delivery, owner: str, errors: dict[str, t.Any]) -> Status:
        logger.warning("Delivery %s no longer validates; marked rejected: %s", delivery.id, errors)
        self.inbox.finish(delivery, owner, (), "rejected", errors=errors)
        return "rejected"
