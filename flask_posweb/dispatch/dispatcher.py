"""Dispatching one stored delivery: lease, receivers, outcome.

Every way of running receivers (the request, the background thread,
``flask posweb worker``, a Celery task, any engine through
:func:`~flask_posweb.dispatch.dispatch_delivery`) goes through
:meth:`Dispatcher.run`, so the guarantees are the same everywhere:

- a dispatcher holds the delivery's lease, renews it before a receiver once
  half of it has passed, and runs no receiver after it knows the lease is gone;
- a dispatcher takes only deliveries whose expected receivers it has (the set
  the receiving app had): two apps on one database never finish each other's
  deliveries, and a worker started without the receiver modules leaves them;
- only the dispatcher whose outcome was recorded sends ``webhook_processed``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import typing as t

from .. import signals
from ..events import EVENTS
from ..events import WebhookEvent
from ..exceptions import WebhookError
from ..inbox import Attempt
from ..inbox import Delivery
from ..inbox import Inbox
from ..inbox import ReceiverSet
from ..inbox import Status
from ..inbox import states
from ..payload import validated
from ..web.headers import RedactedHeaders
from .receivers import call_receivers
from .receivers import named_receivers
from .receivers import notify
from .receivers import receiver_set

if t.TYPE_CHECKING:
    from flask import Flask

    from ..config import Settings

__all__ = ["Dispatcher", "Lease", "webhook_event"]

logger = logging.getLogger("flask_posweb")


def webhook_event(
    delivery: Delivery, data: dict[str, t.Any], missing: t.Sequence[str] = ()
) -> WebhookEvent[dict[str, t.Any]]:
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
        missing=tuple(missing),
    )


class Lease:
    """A dispatcher's hold on one delivery, renewed before receivers as needed.

    The clock starts when the delivery was taken (just before this is made),
    and is this process's monotonic clock: only durations are compared, so
    the servers' clocks need not agree.
    """

    def __init__(self, inbox: Inbox, delivery: Delivery, owner: str, seconds: float) -> None:
        self.inbox, self.delivery_id, self.owner, self.seconds = inbox, delivery.id, owner, seconds
        self._granted = time.monotonic()
        self.lost = False

    def keep(self) -> bool:
        """Before a receiver: renew once half the lease has passed. ``False`` when
        it was lost to another dispatcher: then no receiver may run."""
        if not self.lost and time.monotonic() - self._granted > self.seconds / 2:
            self.lost = not self.inbox.extend(self.delivery_id, self.owner, self.seconds)
            self._granted = time.monotonic()
            if self.lost:
                logger.warning(
                    "Delivery %s: lease lost to another dispatcher; no further receiver runs here",
                    self.delivery_id,
                )
        return not self.lost


class Dispatcher:
    """Dispatches the stored deliveries of one app and decides what comes next.

    :param app: the sender of every signal.
    """

    def __init__(self, app: Flask, inbox: Inbox, settings: Settings) -> None:
        self.app = app
        self.inbox = inbox
        self.settings = settings
        self._acceptable: list[str] = []
        self._acceptable_at = -1e9

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt``: doubled each time, capped."""
        delay = self.settings.retry_backoff * 2 ** (attempt - 1)
        return float(min(delay, self.settings.retry_max_delay))

    # -- which deliveries this dispatcher may take ---------------------------------

    def receivers(self) -> dict[str, ReceiverSet]:
        """This app's receivers for every event."""
        return {name: receiver_set(event.signal, self.app, name) for name, event in EVENTS.items()}

    def acceptable(self) -> list[str]:
        """Keys of the receiver sets this dispatcher has every receiver of: its
        own, and the stored ones it covers (read again at most once per poll
        interval: others appear when an app with other receivers stores its
        first delivery).
        """
        mine = self.receivers()
        if time.monotonic() - self._acceptable_at > self.settings.poll_interval:
            self._acceptable = [
                found.key
                for found in self.inbox.receiver_sets()
                if found.event in mine and found.names <= mine[found.event].names
            ]
            self._acceptable_at = time.monotonic()
        return list({*(own.key for own in mine.values()), *self._acceptable})

    def lacking(self) -> list[tuple[str, frozenset[str], int]]:
        """Deliveries waiting for receivers this dispatcher does not have:
        (event, the receivers it lacks, how many deliveries), for a loud log at start."""
        mine = self.receivers()
        waiting = self.inbox.waiting_for(self.acceptable())
        sets = {found.key: found for found in self.inbox.receiver_sets()}
        report = []
        for key, count in sorted(waiting.items()):
            found = sets.get(key)
            if found is not None:
                have = mine[found.event].names if found.event in mine else frozenset()
                report.append((found.event, found.names - have, count))
        return report

    def take_due(self, owner: str) -> Delivery | None:
        """Lease the delivery due first, among those this dispatcher may take."""
        return self.inbox.claim_due(owner, self.settings.lease, self.acceptable())

    def dispatch(self, delivery_id: int, owner: str) -> Status | None:
        """Take one delivery by id and run it; ``None`` when it is not
        dispatchable now (finished, held by another dispatcher, or expecting
        receivers this app lacks)."""
        delivery = self.inbox.claim(delivery_id, owner, self.settings.lease, self.acceptable())
        return None if delivery is None else self.run(delivery, owner)

    # -- running ---------------------------------------------------------------------

    def run(
        self,
        delivery: Delivery,
        owner: str,
        data: dict[str, t.Any] | None = None,
        missing: t.Sequence[str] = (),
    ) -> Status | None:
        """Run the receivers of a delivery leased to ``owner``; record its outcome.

        :param data: the validated body when the caller has it already (the
            request); otherwise the stored raw body is validated again, so a
            schema fix applies to retries and replays.
        :returns: the new status, or ``None`` when the lease was lost (the
            dispatcher that took over records the outcome).
        """
        event_type = EVENTS.get(delivery.event)
        if event_type is None:
            return self._reject(delivery, owner, {"_event": [f"Unknown event {delivery.event!r}."]})
        if data is None:
            try:
                loaded = validated(event_type, delivery.raw, strict=self.settings.strict_presence)
            except WebhookError as exc:
                return self._reject(delivery, owner, exc.stored_errors())
            data, missing = loaded
        event = webhook_event(delivery, data, missing)
        receivers = named_receivers(event_type.signal, self.app)
        first = delivery.attempts <= 1 and delivery.generation == 0 and not delivery.replay
        lease = Lease(self.inbox, delivery, owner, self.settings.lease)
        outcomes = call_receivers(
            self.app,
            event,
            receivers,
            generation=delivery.generation,
            skip=() if first else delivery.succeeded,
            before_each=lease.keep,
        )
        if lease.lost:
            return None
        status = states.after_dispatch(
            receivers=len(receivers),
            failed=sum(not o.ok for o in outcomes),
            attempts=delivery.attempts,
            max_attempts=self.settings.max_attempts,
        )
        return self._finish(delivery, owner, event, outcomes, status)

    def _finish(
        self,
        delivery: Delivery,
        owner: str,
        event: WebhookEvent[t.Any],
        outcomes: list[Attempt],
        status: Status,
    ) -> Status | None:
        retry_in = self.backoff(delivery.attempts) if status == "failed" else None
        if not self.inbox.finish(delivery, owner, outcomes, status, retry_in=retry_in):
            logger.warning(
                "Delivery %s: lease lost while dispatching; another dispatcher took it over",
                delivery.id,
            )
            return None
        if status == "processed":
            notify(signals.webhook_processed, self.app, event=event)
        elif status == "unhandled":
            logger.warning(
                "Delivery %s (%s): no receiver subscribes to it; marked unhandled "
                "(replay it with 'flask posweb replay %s')",
                delivery.id,
                delivery.event,
                delivery.id,
            )
        elif status == "dead":
            failed = [o.receiver for o in outcomes if not o.ok]
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

    def _reject(self, delivery: Delivery, owner: str, errors: dict[str, t.Any]) -> Status | None:
        logger.warning("Delivery %s no longer validates; marked rejected: %s", delivery.id, errors)
        if not self.inbox.finish(delivery, owner, (), "rejected", errors=errors):
            return None
        return "rejected"
