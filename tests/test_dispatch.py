"""Nothing lost: store then acknowledge, repeats, retries, dead deliveries, leases, modes.

Every test runs on SQLite, then PostgreSQL when available.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb import signals
from flask_posweb.dispatch import dispatch_delivery
from flask_posweb.dispatch import runner as runner_module
from flask_posweb.dispatch.dispatcher import Dispatcher
from flask_posweb.dispatch.receivers import receiver_set
from flask_posweb.dispatch.runner import Runner
from flask_posweb.inbox import Delivery
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import ReceiverSet
from flask_posweb.schemas import OpenSchema
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_signals
from flask_posweb.testing import drain

from .conftest import KEY
from .conftest import Clock
from .conftest import MakeApp
from .conftest import run_together

Event = WebhookEvent[t.Any]


@pytest.fixture
def make_app(make_app: MakeApp, database_url: str) -> MakeApp:
    """Every app of these tests on the parametrised inbox: SQLite, then PostgreSQL."""

    def make(**config: t.Any) -> Flask:
        return make_app(**{"POSWEB_DATABASE_URL": database_url, **config})

    return make


def stored(app: Flask, delivery_id: int | str) -> Delivery:
    delivery = get_state(app).require_inbox().get(int(delivery_id))
    assert delivery is not None
    return delivery


def wait_for(condition: t.Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Flaky:
    """A receiver that fails ``failures`` times, then succeeds; remembers each call."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[Event] = []
        self.__qualname__ = f"Flaky{failures}"

    def __call__(self, sender: Flask, event: Event, **extra: t.Any) -> None:
        self.calls.append(event)
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"failure {len(self.calls)}")


def test_stored_before_receivers_run_and_before_the_answer(
    app: Flask, posweb: PosWeb, client: PosWebClient
) -> None:
    seen: list[Delivery | None] = []

    @posweb.on("payment_created")
    def check(sender: Flask, event: Event, **extra: t.Any) -> None:
        assert event.id is not None
        seen.append(get_state(sender).require_inbox().get(event.id))  # another connection

    response = client.deliver("payment_created")
    assert response.status_code == 200
    assert seen[0] is not None and seen[0].status == "pending"  # committed already
    assert stored(app, response.headers["X-PosWeb-Delivery"]).status == "processed"


def test_rejected_deliveries_are_kept_and_a_fixed_schema_accepts_them_again(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    body = b'{"ID": "p-9", "Amount": 10}'
    response = app.test_client().deliver("payment_created", body)  # type: ignore[attr-defined]
    assert response.status_code == 422
    (row,) = get_state(app).require_inbox().deliveries()
    assert row.status == "rejected" and row.raw == body
    assert row.errors is not None and row.errors["InvoiceID"] == [
        "Missing data for required field."
    ]
    # A fix is deployed (here: a permissive schema); the operator replays it.
    fixed = dataclasses.replace(EVENTS["payment_created"], schema=OpenSchema)
    monkeypatch.setitem(EVENTS, "payment_created", fixed)  # type: ignore[index]
    seen: list[Event] = []
    fixed.signal.connect(lambda sender, event, **extra: seen.append(event), sender=app, weak=False)
    inbox = get_state(app).require_inbox()
    assert inbox.replay(Filter(ids=[row.id])) == 1
    assert drain(app) == 1
    assert [e.id for e in seen] == [row.id] and stored(app, row.id).status == "processed"


def test_a_repeat_of_a_processed_delivery_dispatches_nothing(
    app: Flask, posweb: PosWeb, client: PosWebClient
) -> None:
    calls: list[int | None] = []
    posweb.on("invoice_created")(lambda sender, event, **extra: calls.append(event.id))
    first = client.deliver("invoice_created")
    with captured_signals(app, signals.webhook_received) as received:
        again = client.deliver("invoice_created")
    assert first.status_code == again.status_code == 200
    assert first.headers["X-PosWeb-Delivery"] == again.headers["X-PosWeb-Delivery"]
    assert len(calls) == 1 and received == []


def test_a_repeat_of_a_failed_delivery_retries_only_what_failed(
    app: Flask, posweb: PosWeb, client: PosWebClient
) -> None:
    flaky = Flaky(failures=1)
    steady: list[int] = []
    posweb.on("payment_updated")(flaky)
    posweb.on("payment_updated")(lambda sender, event, **extra: steady.append(event.attempt))
    first = client.deliver("payment_updated")
    assert first.status_code == 200
    assert stored(app, first.headers["X-PosWeb-Delivery"]).status == "failed"
    again = client.deliver("payment_updated")  # DealPOS sends it again
    assert again.status_code == 200
    assert [e.attempt for e in flaky.calls] == [1, 2] and steady == [1]
    assert stored(app, first.headers["X-PosWeb-Delivery"]).status == "processed"


def test_fails_twice_then_succeeds_three_attempts_others_once(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    flaky, steady = Flaky(failures=2), Flaky(failures=0)
    posweb.on("payment_created")(flaky)
    posweb.on("payment_created")(steady)
    response = app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert response.status_code == 200 and flaky.calls == []  # the worker dispatches
    delivery_id = int(response.headers["X-PosWeb-Delivery"])
    assert [drain(app), drain(app), drain(app), drain(app)] == [1, 1, 1, 0]
    assert [e.attempt for e in flaky.calls] == [1, 2, 3]
    assert [e.attempt for e in steady.calls] == [1]
    assert all(e.id == delivery_id and not e.is_replay for e in flaky.calls)
    outcomes = [
        (a.receiver, a.attempt, a.ok) for a in get_state(app).require_inbox().attempts(delivery_id)
    ]
    assert outcomes == [
        ("Flaky2", 1, False),
        ("Flaky0", 1, True),
        ("Flaky2", 2, False),
        ("Flaky2", 3, True),
    ]
    delivery = stored(app, delivery_id)
    assert delivery.status == "processed" and delivery.attempts == 3


def test_a_failed_delivery_waits_for_its_backoff(make_app: MakeApp, posweb: PosWeb) -> None:
    app = make_app(POSWEB_DISPATCH="worker", POSWEB_RETRY_BACKOFF=3600)
    posweb.on("payment_created")(Flaky(failures=1))
    app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert drain(app) == 1
    assert drain(app, failed=False) == 0  # an hour to go
    delivery = get_state(app).require_inbox().deliveries()[0]
    assert delivery.status == "failed" and delivery.next_attempt_at is not None
    waited = (delivery.next_attempt_at - delivery.updated_at).total_seconds()
    assert 3590 < waited < 3610
    assert drain(app) == 1  # the test kit's drain runs it now


def test_after_max_attempts_a_delivery_is_dead_and_says_so(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_DISPATCH="worker", POSWEB_MAX_ATTEMPTS=2)
    flaky = Flaky(failures=99)
    posweb.on("payment_deleted")(flaky)
    response = app.test_client().deliver("payment_deleted")  # type: ignore[attr-defined]
    delivery_id = int(response.headers["X-PosWeb-Delivery"])
    with captured_signals(app, signals.webhook_dead) as dead:
        assert [drain(app), drain(app), drain(app)] == [1, 1, 0]  # dead: never taken again
    assert len(flaky.calls) == 2
    assert stored(app, delivery_id).status == "dead"
    (sent,) = dead
    assert sent.name == "webhook_dead"
    assert sent.kwargs["event"].id == delivery_id and sent.kwargs["failed"] == ["Flaky99"]


def test_a_repeat_of_a_dead_delivery_gets_a_fresh_attempt_budget(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_MAX_ATTEMPTS=1)
    flaky = Flaky(failures=1)
    posweb.on("payment_deleted")(flaky)
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    first = client.deliver("payment_deleted")
    assert stored(app, first.headers["X-PosWeb-Delivery"]).status == "dead"
    client.deliver("payment_deleted")  # DealPOS's own retry, 7 s later
    after = stored(app, first.headers["X-PosWeb-Delivery"])
    assert after.status == "processed" and after.attempts == 1 and len(flaky.calls) == 2


def test_backoff_doubles_and_is_capped(make_app: MakeApp) -> None:
    app = make_app(POSWEB_RETRY_BACKOFF=30, POSWEB_RETRY_MAX_DELAY=200)
    dispatcher = get_state(app).require_dispatcher()
    assert [dispatcher.backoff(n) for n in range(1, 6)] == [30, 60, 120, 200, 200]


def test_the_same_body_twice_at_once_is_stored_and_handled_once(app: Flask, posweb: PosWeb) -> None:
    calls: list[int | None] = []

    @posweb.on("invoice_created")
    def slow(sender: Flask, event: Event, **extra: t.Any) -> None:
        calls.append(event.id)
        time.sleep(0.3)

    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def post() -> None:
        client: PosWebClient = app.test_client()  # type: ignore[assignment]
        barrier.wait()
        statuses.append(client.deliver("invoice_created").status_code)

    run_together(post, 2)
    assert statuses == [200, 200]
    assert len(calls) == 1
    assert get_state(app).require_inbox().counts()["processed"] == 1


def test_thread_mode_answers_first_and_dispatches_in_the_background(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(TESTING=False, POSWEB_DISPATCH="thread", POSWEB_POLL_INTERVAL=0.05)
    release = threading.Event()
    seen: list[str] = []

    @posweb.on("shift_closed")
    def waits(sender: Flask, event: Event, **extra: t.Any) -> None:
        release.wait(5)
        seen.append(threading.current_thread().name)

    client = PosWebClient(app)
    response = client.deliver("shift_closed")
    assert response.status_code == 200 and seen == []
    release.set()
    wait_for(lambda: stored(app, response.headers["X-PosWeb-Delivery"]).status == "processed")
    assert seen == ["posweb-dispatch"]


# -- inline: the outcome goes with the process's next commit ------------------------


def inline_app(make_app: MakeApp, monkeypatch: pytest.MonkeyPatch, settle: float) -> Flask:
    """An inline app with its background thread, as in production (no TESTING)."""
    monkeypatch.setattr(runner_module, "SETTLE_DELAY", settle)
    return make_app(TESTING=False, POSWEB_DISPATCH="inline", POSWEB_POLL_INTERVAL=60)


def test_inline_takes_the_lock_once_per_delivery(
    make_app: MakeApp, posweb: PosWeb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request commits once: its delivery, with the outcome the one before
    it deferred; the background thread records the last, and sends the signals."""
    app = inline_app(make_app, monkeypatch, settle=30)  # the next request comes first
    ran: list[int] = []
    processed: list[tuple[int, str]] = []
    posweb.on("payment_created")(lambda sender, event, **extra: ran.append(event.id))

    @signals.webhook_processed.connect_via(app)
    def done(sender: Flask, event: Event, **extra: t.Any) -> None:
        processed.append((event.id, threading.current_thread().name))

    client = PosWebClient(app)
    client.get("/")  # any request starts the thread; its first pass writes (retention)
    background = get_state(app).require_dispatch().background
    assert background is not None
    wait_for(lambda: background.passes > 0)
    engine = get_state(app).require_inbox().database.engines.durable
    log: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: log.append(a[2].split()[0]))
    sa.event.listen(engine, "commit", lambda connection: log.append("COMMIT"))
    body = json.loads(sample("payment_created"))
    first = int(client.deliver("payment_created", body).headers["X-PosWeb-Delivery"])
    assert ran == [first] and log.count("COMMIT") == 1
    assert stored(app, first).status == "pending"  # deferred: still leased to the request
    assert processed == []  # sent once recorded
    del log[:]
    body["Number"] = "KMG-PAY-2026-00389"
    second = int(client.deliver("payment_created", body).headers["X-PosWeb-Delivery"])
    assert log.count("COMMIT") == 1  # one transaction: the delivery and the outcome
    assert log.index("UPDATE") < log.index("COMMIT")
    assert stored(app, first).status == "processed"
    assert stored(app, second).status == "pending"
    get_state(app).require_dispatch().close()  # the thread settles what is left
    assert stored(app, second).status == "processed"
    assert ran == [first, second] and stored(app, first).attempts == 1
    assert sorted(processed) == [(first, "posweb-dispatch"), (second, "posweb-dispatch")]


def test_a_deferred_outcome_is_recorded_soon_without_another_request(
    make_app: MakeApp, posweb: PosWeb, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = inline_app(make_app, monkeypatch, settle=0.02)
    flaky = Flaky(1)
    posweb.on("payment_created")(flaky)
    response = PosWebClient(app).deliver("payment_created")
    delivery_id = int(response.headers["X-PosWeb-Delivery"])
    wait_for(lambda: stored(app, delivery_id).status == "failed")
    assert stored(app, delivery_id).locked_by is None and len(flaky.calls) == 1


def test_deferring_needs_the_background_thread(
    make_app: MakeApp, posweb: PosWeb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``TESTING`` on there is no thread to settle: the request records its outcome."""
    app = make_app(POSWEB_DISPATCH="inline")
    posweb.on("payment_created")(lambda sender, event, **extra: None)
    threads: list[str] = []

    @signals.webhook_processed.connect_via(app)
    def done(sender: Flask, event: Event, **extra: t.Any) -> None:
        threads.append(threading.current_thread().name)

    response = PosWebClient(app).deliver("payment_created")
    assert stored(app, response.headers["X-PosWeb-Delivery"]).status == "processed"
    assert threads == [threading.current_thread().name]


def test_an_event_nobody_subscribes_to_ends_unhandled(app: Flask, client: PosWebClient) -> None:
    """Inbox 0.2: a delivery with no receiver anywhere ends in a status of its own."""
    response = client.deliver("outlet_deleted")
    assert response.status_code == 200
    assert stored(app, response.headers["X-PosWeb-Delivery"]).status == "unhandled"


def expected(app: Flask, event: str) -> ReceiverSet:
    """The receivers ``app`` has for ``event``, as a delivery records them."""
    return receiver_set(EVENTS[event].signal, app, event)


def test_a_stored_delivery_that_no_longer_validates_is_rejected(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    posweb.on("payment_created", name="ledger")(lambda sender, event, **extra: None)
    inbox = get_state(app).require_inbox()
    receivers = expected(app, "payment_created")
    delivery = inbox.admit("payment_created", b'{"ID": ""}', {}, receivers=receivers).delivery
    assert dispatch_delivery(app, delivery.id) == "rejected"
    after = stored(app, delivery.id)
    assert after.status == "rejected" and after.errors is not None and "ID" in after.errors


# -- leases: Inbox 0.2, finding 4 ------------------------------------------------------
# A dispatcher and an inbox on one clock that the test moves: no test sleeps
# for a lease to pass.


@dataclasses.dataclass
class Leasing:
    """An app's receivers, dispatched by a dispatcher of the test's own on the test's clock."""

    app: Flask
    inbox: Inbox
    dispatcher: Dispatcher
    clock: Clock

    def store(self, event: str = "payment_created", body: bytes | None = None) -> int:
        admission = self.inbox.admit(
            event, body or sample(event), {}, receivers=expected(self.app, event)
        )
        return admission.delivery.id

    def drain(self) -> int:
        return Runner(self.dispatcher, "runner").drain()


@pytest.fixture
def leasing(
    make_app: MakeApp, database_url: str, clock: Clock
) -> t.Iterator[t.Callable[..., Leasing]]:
    def setup(lease: float) -> Leasing:
        app = make_app(POSWEB_LEASE=lease, POSWEB_DISPATCH="worker")
        inbox = Inbox.from_url(database_url, clock=clock)
        policy = get_state(app).settings
        dispatcher = Dispatcher(app, inbox, policy, clock=clock.monotonic)
        made.append(inbox)
        return Leasing(app, inbox, dispatcher, clock)

    made: list[Inbox] = []
    yield setup
    for inbox in made:
        inbox.close()


def test_a_long_dispatch_renews_its_lease(leasing: t.Any, posweb: PosWeb) -> None:
    walk: Leasing = leasing(lease=120)
    leases: list[dt.datetime | None] = []
    intruder: list[Delivery | None] = []

    def lease_of(event: Event) -> dt.datetime | None:
        assert event.id is not None
        delivery = walk.inbox.get(event.id)
        return None if delivery is None else delivery.locked_until

    @posweb.on("payment_created")
    def slow(sender: Flask, event: Event, **extra: t.Any) -> None:
        leases.append(lease_of(event))
        walk.clock.advance(80)  # two thirds of the lease

    @posweb.on("payment_created")
    def then_checks(sender: Flask, event: Event, **extra: t.Any) -> None:
        leases.append(lease_of(event))  # renewed before this receiver
        walk.clock.advance(50)  # past the first lease
        assert event.id is not None
        acceptable = walk.dispatcher.acceptable()
        intruder.append(walk.inbox.claim(event.id, "intruder", 1, acceptable))

    delivery_id = walk.store()
    assert walk.drain() == 1
    first, renewed = leases
    assert first is not None and renewed is not None
    assert renewed - first == dt.timedelta(seconds=80)  # renewed at the second receiver
    assert intruder == [None]
    assert walk.inbox.get(delivery_id).status == "processed"  # type: ignore[union-attr]


def test_no_receiver_runs_once_the_lease_is_known_lost(leasing: t.Any, posweb: PosWeb) -> None:
    """0.1 ran the remaining receivers after its lease was taken over."""
    walk: Leasing = leasing(lease=120)
    ran: list[str] = []

    @posweb.on("payment_created")
    def slow(sender: Flask, event: Event, **extra: t.Any) -> None:
        ran.append("slow")
        walk.clock.advance(130)  # past the whole lease...
        assert event.id is not None
        # ... and another dispatcher took the delivery over meanwhile.
        acceptable = walk.dispatcher.acceptable()
        assert walk.inbox.claim(event.id, "other-dispatcher", 600, acceptable) is not None

    @posweb.on("payment_created")
    def second(sender: Flask, event: Event, **extra: t.Any) -> None:
        ran.append("second")

    with captured_signals(walk.app, signals.webhook_processed) as processed:
        walk.store()
        assert walk.drain() == 1
    assert ran == ["slow"]  # "second" never ran here: the other dispatcher runs it
    assert processed == []  # and only the dispatcher whose outcome is recorded says so
    delivery = walk.inbox.deliveries()[0]
    assert delivery.locked_by == "other-dispatcher" and delivery.outcomes == []


def test_each_delivery_gets_its_own_lease_clock(leasing: t.Any, posweb: PosWeb) -> None:
    """0.1 leased a whole batch on one clock: late members ran twice."""
    walk: Leasing = leasing(lease=50)
    starts: dict[int, float] = {}

    @posweb.on("shift_closed")
    def slowish(sender: Flask, event: Event, **extra: t.Any) -> None:
        assert event.id is not None
        starts[event.id] = walk.clock.monotonic()
        walk.clock.advance(20)

    ids = [walk.store("shift_closed", f'{{"ID": "s{n}"}}'.encode()) for n in range(5)]
    taken_at = walk.clock.monotonic()
    assert walk.drain() == 5  # 100 s in all: twice the lease for the last ones
    for delivery_id in ids:
        delivery = walk.inbox.get(delivery_id)
        assert delivery is not None and delivery.status == "processed" and delivery.attempts == 1
    assert starts[ids[-1]] - taken_at == 80  # the last one started after a first lease ended


def test_webhook_processed_comes_from_the_dispatcher_that_recorded_it(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    posweb.on("payment_created")(lambda sender, event, **extra: None)
    response = app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    with captured_signals(app, signals.webhook_processed) as processed:
        assert dispatch_delivery(app, int(response.headers["X-PosWeb-Delivery"])) == "processed"
        assert dispatch_delivery(app, int(response.headers["X-PosWeb-Delivery"])) is None
    assert [s.kwargs["event"].id for s in processed] == [int(response.headers["X-PosWeb-Delivery"])]


def test_orphaned_deliveries_of_a_dead_process_are_picked_up(
    leasing: t.Any, posweb: PosWeb
) -> None:
    walk: Leasing = leasing(lease=120)
    seen: list[int] = []
    posweb.on("payment_created")(lambda sender, event, **extra: seen.append(event.attempt))
    # A request stored this delivery and died before running its receivers.
    orphan = walk.inbox.admit(
        "payment_created",
        sample("payment_created"),
        {},
        receivers=expected(walk.app, "payment_created"),
        owner="dead",
        lease=60,
    )
    assert walk.drain() == 0  # still leased to the dead request
    walk.clock.advance(59)
    assert walk.drain() == 0
    walk.clock.advance(2)  # its lease ran out
    assert walk.drain() == 1
    assert walk.inbox.get(orphan.delivery.id).status == "processed"  # type: ignore[union-attr]
    assert seen == [2]


def test_credentials_are_checked_before_anything_is_stored(
    app: Flask, client: PosWebClient
) -> None:
    response = client.deliver("payment_created", key="wrong-key-0123456789")
    assert response.status_code == 401
    assert get_state(app).require_inbox().deliveries() == []
    assert client.deliver("payment_created", key=KEY).status_code == 200
