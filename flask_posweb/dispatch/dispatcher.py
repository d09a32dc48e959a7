"""Dispatching one stored delivery: lease, receivers, outcome.

Every way of running receivers (the request, the background thread,
``flask posweb worker``, a Celery task, any engine through
:func:`dispatch_delivery`) goes through :meth:`Dispatcher.run`, so the
guarantees are the same everywhere:

- a dispatcher holds the delivery's lease, renews it before a receiver once
  half of it has passed, and runs no receiver after it knows the lease is gone;
- a dispatcher takes only deliveries whose expected receivers it has (the set
  the receiving app had): two apps on one database never finish each other's
  deliveries, and a worker started without the receiver modules leaves them;
- only the dispatcher whose outcome was recorded sends ``webhook_processed``;
- a dispatcher says now and then which receivers it has (:meth:`Dispatcher.beat`),
  so that deliveries that no live dispatcher can take are marked stranded
  (:meth:`Dispatcher.strand`) instead of waiting unseen, until an operator
  adopts them for the receivers deployed now (:meth:`Dispatcher.replay`).

An outcome may be *deferred* (``inline`` mode, in a request): it is then
recorded with the process's next commit, which is a new delivery's under load,
or by :meth:`Dispatcher.settle`, which the background thread calls shortly
after; the signals that follow an outcome are sent once it is recorded, by
:meth:`~Dispatcher.settle`. So a request takes the lock once, for its delivery.

A dispatcher gets what it needs as arguments: the app (the sender of every
signal), its inbox and a :class:`Policy` (the settings it reads).

.. versionadded:: 0.1
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
import typing as t
from collections.abc import Callable
from collections.abc import Sequence

from .. import signals
from .. import tracing
from ..durations import human
from ..events import EVENTS
from ..events import WebhookEvent
from ..exceptions import WebhookError
from ..headers import RedactedHeaders
from ..inbox import Attempt
from ..inbox import Delivery
from ..inbox import Filter
from ..inbox import ReceiverSet
from ..inbox import Retention
from ..inbox import Status
from ..inbox import Stranding
from ..inbox import states
from ..payload import validated
from .outcomes import Outcome
from .outcomes import report
from .owners import new_owner
from .receivers import call_receivers
from .receivers import named_receivers
from .receivers import notify
from .receivers import receiver_set

if t.TYPE_CHECKING:
    from flask import Flask

    from ..inbox import Inbox

__all__ = [
    "Dispatcher",
    "Lease",
    "Policy",
    "dispatch_delivery",
    "dispatcher_of",
    "replay",
    "webhook_event",
]

logger = logging.getLogger("flask_posweb")


class Policy(t.Protocol):
    """What dispatching reads of an app's settings (:class:`~flask_posweb.config.Settings`)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def retry_backoff(self) -> float: ...
    @property
    def retry_max_delay(self) -> float: ...
    @property
    def lease(self) -> float: ...
    @property
    def stranded_after(self) -> float: ...
    @property
    def poll_interval(self) -> float: ...
    @property
    def strict_presence(self) -> bool: ...
    @property
    def retention(self) -> Retention: ...


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
        merchant=delivery.merchant,
    )


class Lease:
    """A dispatcher's hold on one delivery, renewed before receivers as needed.

    The clock starts when the delivery was taken (just before this is made),
    and is this process's monotonic clock: only durations are compared, so
    the servers' clocks need not agree.

    :param clock: seconds of a monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        inbox: Inbox,
        delivery: Delivery,
        owner: str,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inbox, self.delivery_id, self.owner, self.seconds = inbox, delivery.id, owner, seconds
        self.clock = clock
        self._granted = clock()
        self.lost = False

    def keep(self) -> bool:
        """Before a receiver: renew once half the lease has passed. ``False`` when
        it was lost to another dispatcher: then no receiver may run."""
        if not self.lost and self.clock() - self._granted > self.seconds / 2:
            self.lost = not self.inbox.extend(self.delivery_id, self.owner, self.seconds)
            self._granted = self.clock()
            if self.lost:
                logger.warning(
                    "Delivery %s: lease lost to another dispatcher; no further receiver runs here",
                    self.delivery_id,
                )
        return not self.lost


class Dispatcher:
    """Dispatches the stored deliveries of one app and decides what comes next.

    :param app: the sender of every signal.
    :param policy: the settings that say how (attempts, backoff, leases).
    :param clock: seconds of a monotonic clock, for leases (tests pass their
        own, with the inbox's clock: then no test sleeps for a lease to pass).
    """

    def __init__(
        self,
        app: Flask,
        inbox: Inbox,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.inbox = inbox
        self.policy = policy
        self.clock = clock
        self._acceptable: list[str] = []
        self._acceptable_at = -1e9
        self._beaten_at: float | None = None
        #: Deferred outcomes once committed, with what follows them (see settle).
        self._settled: collections.deque[_Settled] = collections.deque()

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt``: doubled each time, capped."""
        delay = self.policy.retry_backoff * 2 ** (attempt - 1)
        return float(min(delay, self.policy.retry_max_delay))

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
        if self.clock() - self._acceptable_at > self.policy.poll_interval:
            self._acceptable = [
                found.key
                for found in self.inbox.receiver_sets()
                if found.event in mine and found.names <= mine[found.event].names
            ]
            self._acceptable_at = self.clock()
        return list({*(own.key for own in mine.values()), *self._acceptable})

    def lacking(self) -> list[tuple[str, frozenset[str], int]]:
        """Deliveries waiting for receivers this dispatcher does not have:
        (event, the receivers it lacks, how many deliveries), for a loud log at start."""
        waiting = self.inbox.waiting_for(self.acceptable())
        sets = self._stored_sets()
        return [
            (sets[key].event, self._missing(sets[key]), count)
            for key, count in sorted(waiting.items())
            if key in sets
        ]

    def lacking_for(self, delivery: Delivery) -> frozenset[str]:
        """The receivers ``delivery`` expects that this dispatcher does not have
        (empty: it has them all, or the delivery expects none in particular)."""
        if delivery.receiver_set is None or delivery.receiver_set in self.acceptable():
            return frozenset()
        expected = self._stored_sets().get(delivery.receiver_set)
        if expected is None:  # not recorded: only its key is known
            return frozenset({"(unknown receivers)"})
        return self._missing(expected)

    def _stored_sets(self) -> dict[str, ReceiverSet]:
        return {found.key: found for found in self.inbox.receiver_sets()}

    def _missing(self, expected: ReceiverSet) -> frozenset[str]:
        """The receivers of ``expected`` that this dispatcher does not have."""
        mine = self.receivers().get(expected.event)
        return expected.names - (mine.names if mine is not None else frozenset())

    # -- liveness: deliveries that no live dispatcher can take ---------------------

    def beat(self, *, force: bool = False) -> None:
        """Say that a dispatcher with these receivers is alive (the sets it
        :meth:`accepts <acceptable>`), at most once every :attr:`beat_interval`
        unless ``force``."""
        now = self.clock()
        recent = self._beaten_at is not None and now - self._beaten_at < self.beat_interval
        if recent and not force:
            return
        if force:
            self._acceptable_at = -1e9  # the sets stored lately too
        self.inbox.beat(self.acceptable(), every=self.beat_interval)
        self._beaten_at = now

    @property
    def beat_interval(self) -> float:
        """Seconds between two :meth:`beat`: a third of ``POSWEB_STRANDED_AFTER``,
        at most a minute, so that a live dispatcher never looks gone."""
        return min(60.0, self.policy.stranded_after / 3)

    def strand(self) -> Stranding:
        """Mark stranded the deliveries that have waited ``POSWEB_STRANDED_AFTER``
        for receivers no live dispatcher has, and revive those whose receivers
        are back (see :mod:`~flask_posweb.inbox.liveness`); log and signal them."""
        # This dispatcher is alive, and may have sets stored since it last
        # looked: said first, so that it never strands what it would take.
        self.beat(force=True)
        found = self.inbox.strand(self.policy.stranded_after)
        waiting: collections.Counter[tuple[str, frozenset[str]]] = collections.Counter()
        if found.stranded:
            sets = self._stored_sets()
            with self.app.app_context():
                for delivery in found.stranded:
                    expected = sets.get(delivery.receiver_set or "")
                    names = expected.names if expected is not None else frozenset()
                    missing = self._missing(expected) if expected is not None else frozenset()
                    waiting[delivery.event, missing] += 1
                    notify(
                        signals.webhook_stranded,
                        self.app,
                        delivery_id=delivery.id,
                        event_name=delivery.event,
                        receivers=names,
                        merchant=delivery.merchant,
                    )
        for (event, lacking), count in sorted(waiting.items(), key=lambda item: item[0][0]):
            logger.error(
                "%s %s %s stranded: %s waited %s for receivers no live dispatcher has (%s); "
                "run them with this app's receivers: flask posweb replay --adopt --status stranded",
                count,
                event,
                "delivery" if count == 1 else "deliveries",
                "it" if count == 1 else "they",
                human(self.policy.stranded_after),
                ", ".join(sorted(lacking)) or "none missing here",
            )
        if found.revived:
            logger.info(
                "%s stranded %s due again: a dispatcher with their receivers is back",
                found.revived,
                "delivery" if found.revived == 1 else "deliveries",
            )
        return found

    def due_merchants(self) -> list[str | None]:
        """The merchants with deliveries due that this dispatcher may take, the
        one waiting longest first (``None``: the app's own)."""
        return self.inbox.due_merchants(self.acceptable())

    def others_due(self, merchant: str | None) -> bool:
        """Whether another merchant than ``merchant`` has a delivery due that
        this dispatcher may take."""
        return self.inbox.others_due(self.acceptable(), merchant)

    def take_due(self, owner: str, merchant: str | None = None) -> Delivery | None:
        """Lease ``merchant``'s delivery due first, among those this dispatcher may take."""
        return self.inbox.claim_due(owner, self.policy.lease, self.acceptable(), merchant)

    def dispatch(self, delivery_id: int, owner: str) -> Status | None:
        """Take one delivery by id and run it; ``None`` when it is not
        dispatchable now (finished, held by another dispatcher, or expecting
        receivers this app lacks)."""
        delivery = self.inbox.claim(delivery_id, owner, self.policy.lease, self.acceptable())
        return None if delivery is None else self.run(delivery, owner)

    def replay(
        self,
        delivery_ids: Sequence[int],
        *,
        adopt: bool = False,
        on_each: Callable[[], None] | None = None,
    ) -> collections.Counter[str]:
        """Replay deliveries here and now: each is made due again
        (:data:`~flask_posweb.inbox.states.REPLAY`), then taken and dispatched
        in this process, in the app context.

        :param adopt: the deliveries expect this app's receivers from now on
            (see :meth:`~flask_posweb.Inbox.replay`): what runs a delivery
            stranded by a deploy that renamed or removed a receiver.
        :param on_each: called after each delivery (a progress bar).
        :returns: how many ended in each status; ``busy`` for those another
            dispatcher held, ``lacking receivers`` for those expecting
            receivers this app does not have (adopt them).
        """
        owner, tally = new_owner("replay"), collections.Counter[str]()
        sets = self.receivers().values() if adopt else ()
        for start in range(0, len(delivery_ids), 500):
            chunk = list(delivery_ids[start : start + 500])
            # Without adopt, one whose receivers this app lacks is left as it is.
            expecting = None if adopt else self.acceptable()
            self.inbox.replay(Filter(ids=chunk), adopt=sets, expecting=expecting)
            for delivery_id in chunk:
                with self.app.app_context():
                    status = self.dispatch(delivery_id, owner)
                tally[status or self._why_not_taken(delivery_id)] += 1
                if on_each is not None:
                    on_each()
        return tally

    def _why_not_taken(self, delivery_id: int) -> str:
        delivery = self.inbox.get(delivery_id)
        return "lacking receivers" if delivery and self.lacking_for(delivery) else "busy"

    # -- running ---------------------------------------------------------------------

    def run(
        self,
        delivery: Delivery,
        owner: str,
        data: dict[str, t.Any] | None = None,
        missing: t.Sequence[str] = (),
        *,
        defer: bool = False,
    ) -> Status | None:
        """Run the receivers of a delivery leased to ``owner``; record its outcome.

        :param data: the validated body when the caller has it already (the
            request); otherwise the stored raw body is validated again, so a
            schema fix applies to retries and replays.
        :param defer: record the outcome with this process's next commit rather
            than now; someone must call :meth:`settle` soon after (the
            background thread does).
        :returns: the new status (with ``defer``: the status to be recorded),
            or ``None`` when the lease was lost (the dispatcher that took over
            records the outcome).
        """
        started = time.perf_counter()  # the outcome's duration: validation and receivers
        attributes = tracing.messaging("process", delivery.event, delivery.id, delivery.merchant)
        with tracing.span(f"process {delivery.event}", attributes, "consumer") as span:
            status = self._run(delivery, owner, data, missing, defer=defer, started=started)
            span.set("posweb.status", status)
        return status

    def _run(
        self,
        delivery: Delivery,
        owner: str,
        data: dict[str, t.Any] | None,
        missing: t.Sequence[str],
        *,
        defer: bool,
        started: float,
    ) -> Status | None:
        event_type = EVENTS.get(delivery.event)
        if event_type is None:
            errors = {"_event": [f"Unknown event {delivery.event!r}."]}
            return self._reject(delivery, owner, errors, started)
        if data is None:
            try:
                loaded = validated(event_type, delivery.raw, strict=self.policy.strict_presence)
            except WebhookError as exc:
                return self._reject(delivery, owner, exc.stored_errors(), started)
            data, missing = loaded
        event = webhook_event(delivery, data, missing)
        receivers = named_receivers(event_type.signal, self.app)
        first = delivery.attempts <= 1 and delivery.generation == 0 and not delivery.replay
        lease = Lease(self.inbox, delivery, owner, self.policy.lease, self.clock)
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
            max_attempts=self.policy.max_attempts,
        )
        retry_in = self.backoff(delivery.attempts) if status == "failed" else None
        duration = time.perf_counter() - started
        if defer:
            until = self.clock() + self.policy.lease
            settled = _Settled(delivery, owner, event, outcomes, status, retry_in, until, duration)
            self._defer(settled)
            return status
        recorded = self.inbox.finish(delivery, owner, outcomes, status, retry_in=retry_in)
        return self._follow(delivery, event, outcomes, status, recorded, duration)

    def _defer(self, finished: _Settled) -> None:
        def recorded(ok: bool, error: BaseException | None) -> None:
            # In the committing thread, of any request: nothing slow here.
            if error is not None and self.clock() < finished.until:
                self._defer(finished)  # the store is out: the next commit tries again
                return
            finished.ok, finished.error = ok, error
            self._settled.append(finished)

        self.inbox.finish_later(
            finished.delivery,
            finished.owner,
            finished.outcomes,
            finished.status,
            recorded,
            retry_in=finished.retry_in,
        )

    @property
    def unsettled(self) -> int:
        """Deferred outcomes whose signals are not sent yet (committed or not)."""
        return self.inbox.unsettled + len(self._settled)

    def settle(self) -> int:
        """Commit the outcomes deferred by :meth:`run`, and send the signals
        that follow those recorded; how many were settled.

        :raises StoreError: they could not be committed now (they stay queued).
        """
        self.inbox.flush()
        count = 0
        while self._settled:
            finished = self._settled.popleft()
            count += 1
            with self.app.app_context():
                if finished.error is not None:
                    logger.warning(
                        "Delivery %s: outcome not recorded (%s); it runs again later",
                        finished.delivery.id,
                        finished.error,
                    )
                else:
                    self._follow(
                        finished.delivery,
                        finished.event,
                        finished.outcomes,
                        finished.status,
                        finished.ok,
                        finished.duration,
                    )
        return count

    def _follow(
        self,
        delivery: Delivery,
        event: WebhookEvent[t.Any],
        outcomes: list[Attempt],
        status: Status,
        recorded: bool,
        duration: float,
    ) -> Status | None:
        """What follows an outcome once written: its signals and its log record."""
        if not recorded:
            logger.warning(
                "Delivery %s: lease lost while dispatching; another dispatcher took it over",
                delivery.id,
            )
            return None
        outcome = Outcome(
            delivery.id,
            delivery.event,
            delivery.merchant,
            status,
            delivery.attempts,
            duration,
            tuple(outcomes),
        )
        if status == "processed":
            notify(signals.webhook_processed, self.app, event=event, merchant=event.merchant)
            report(self.app, outcome)
        elif status == "unhandled":
            report(
                self.app,
                outcome,
                "Delivery %s (%s): no receiver subscribes to it; marked unhandled "
                "(replay it with 'flask posweb replay %s')",
                delivery.id,
                delivery.event,
                delivery.id,
            )
        elif status == "dead":
            failed = [o.receiver for o in outcomes if not o.ok]
            report(
                self.app,
                outcome,
                "Delivery %s (%s) is dead after %s attempts; replay it with "
                "'flask posweb replay %s'",
                delivery.id,
                delivery.event,
                delivery.attempts,
                delivery.id,
            )
            notify(
                signals.webhook_dead,
                self.app,
                event=event,
                failed=failed,
                merchant=event.merchant,
            )
        else:
            report(self.app, outcome)
        return status

    def _reject(
        self, delivery: Delivery, owner: str, errors: dict[str, t.Any], started: float
    ) -> Status | None:
        if not self.inbox.finish(delivery, owner, (), "rejected", errors=errors):
            return None
        outcome = Outcome(
            delivery.id,
            delivery.event,
            delivery.merchant,
            "rejected",
            delivery.attempts,
            time.perf_counter() - started,
        )
        message = "Delivery %s no longer validates; marked rejected: %s"
        report(self.app, outcome, message, delivery.id, errors)
        return "rejected"


class _Settled:
    """A deferred outcome on its way to the inbox, and then to its signals."""

    __slots__ = (
        "delivery",
        "owner",
        "event",
        "outcomes",
        "status",
        "retry_in",
        "until",
        "duration",
        "ok",
        "error",
    )

    def __init__(
        self,
        delivery: Delivery,
        owner: str,
        event: WebhookEvent[t.Any],
        outcomes: list[Attempt],
        status: Status,
        retry_in: float | None,
        until: float,
        duration: float,
    ) -> None:
        self.delivery, self.owner, self.event = delivery, owner, event
        self.outcomes, self.status, self.retry_in = outcomes, status, retry_in
        #: When the lease ends, on the dispatcher's clock: written later, it is moot.
        self.until = until
        #: Seconds the dispatch took (its outcome's, logged once it is recorded).
        self.duration = duration
        self.ok = False
        self.error: BaseException | None = None


class _Hosting(t.Protocol):
    """What an app keeps at ``app.extensions["posweb"]``, as far as dispatch asks."""

    def require_dispatcher(self) -> Dispatcher: ...


def dispatcher_of(app: Flask) -> Dispatcher:
    """The dispatcher of ``app``'s stored deliveries.

    :raises RuntimeError: Flask-PosWeb is not set up on the app.
    :raises ConfigurationError: the app has no inbox (``POSWEB_INBOX`` is off).
    """
    hosting = t.cast("_Hosting | None", app.extensions.get("posweb"))
    if hosting is None:
        raise RuntimeError(
            "Flask-PosWeb is not set up on this app: call app.register_blueprint(posweb.blueprint)."
        )
    return hosting.require_dispatcher()


def dispatch_delivery(app: Flask, delivery_id: int, *, owner: str | None = None) -> Status | None:
    """Dispatch one stored delivery of ``app`` now, wherever this runs.

    Safe to call more than once for one delivery, and from several processes
    at once: only the caller that takes the lease runs the receivers. A
    pending or failed delivery is taken whether or not it is due: a failed one
    runs at once, before its backoff has passed. So a task engine should not
    retry by itself: a failed delivery is due again after its backoff, and the
    relay (or a worker) brings it back.

    :param owner: who holds the lease, for the inbox's records (default: a new
        id naming this host and process).
    :returns: the delivery's new status, or ``None`` when nothing was run
        (finished already, held by another dispatcher, not in this app's
        inbox, or expecting receivers this app lacks).

    .. versionadded:: 0.2
    """
    dispatcher = dispatcher_of(app)
    with app.app_context():
        return dispatcher.dispatch(delivery_id, owner or new_owner("task"))


def replay(
    state: _Hosting,
    delivery_ids: Sequence[int],
    *,
    adopt: bool = False,
    on_each: Callable[[], None] | None = None,
) -> collections.Counter[str]:
    """Replay deliveries here and now (``flask posweb replay``, the log page):
    each is made due again (:data:`~flask_posweb.inbox.states.REPLAY`), then
    taken and dispatched in this process, in the app context.

    :param state: the app's :class:`~flask_posweb.state.PosWebState`.
    :param adopt: the deliveries expect this app's receivers from now on
        (see :meth:`Dispatcher.replay`).
    :param on_each: called after each delivery (a progress bar).
    :returns: how many ended in each status; ``busy`` for those another
        dispatcher held, ``lacking receivers`` for those whose receivers this
        app does not have.

    .. versionadded:: 0.2
    .. versionchanged:: 0.3
        ``adopt``.
    """
    return state.require_dispatcher().replay(delivery_ids, adopt=adopt, on_each=on_each)
