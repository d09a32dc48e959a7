"""Nothing lost: store then acknowledge, duplicates, retries, dead deliveries, dispatch modes."""

from __future__ import annotations

import contextlib
import dataclasses
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
from flask_posweb.inbox import Delivery
from flask_posweb.schemas import OpenSchema
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_signals
from flask_posweb.testing import drain

from .conftest import MakeApp
from .conftest import run_together


@pytest.fixture
def make_app(make_app: MakeApp, database_url: str) -> MakeApp:
    """Every app of these tests on the parametrised inbox: SQLite, then PostgreSQL."""

    def make(**config: t.Any) -> Flask:
        return make_app(**{"POSWEB_DATABASE_URL": database_url, **config})

    return make


@contextlib.contextmanager
def write_lock_held(app: Flask) -> t.Iterator[None]:
    """Another process holds the inbox's write lock until the block ends."""
    engine = get_state(app).require_inbox().engine
    with engine.connect() as holder:
        if engine.dialect.name == "sqlite":
            holder.exec_driver_sql("SELECT 1")  # our connections begin IMMEDIATE
        else:
            holder.exec_driver_sql("LOCK TABLE posweb_deliveries IN ACCESS EXCLUSIVE MODE")
        yield
        holder.rollback()


def stored(app: Flask, delivery_id: int | str) -> Delivery:
    delivery = get_state(app).require_inbox().get(int(delivery_id))
    assert delivery is not None
    return delivery


def wait_for(condition: t.Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Flaky:
    """A receiver that fails ``failures`` times, then succeeds; remembers each call."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[WebhookEvent] = []

    def __call__(self, sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        self.calls.append(event)
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"failure {len(self.calls)}")


def test_stored_before_receivers_run_and_before_the_answer(
    app: Flask, posweb: PosWeb, client: PosWebClient
) -> None:
    seen: list[Delivery | None] = []

    @posweb.on("payment_created")
    def check(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        assert event.id is not None
        seen.append(get_state(sender).require_inbox().get(event.id))  # another connection

    response = client.deliver("payment_created")
    assert response.status_code == 200
    assert seen[0] is not None and seen[0].status == "pending"  # committed already
    assert stored(app, response.headers["X-PosWeb-Delivery"]).status == "processed"


def test_a_store_that_cannot_commit_answers_503_and_runs_nothing(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_DATABASE_TIMEOUT=0.2, POSWEB_RETRY_AFTER=12)
    ran: list[str] = []
    posweb.on("payment_created")(lambda sender, event, **extra: ran.append("ran"))
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    inbox = get_state(app).require_inbox()
    inbox.counts()
    with write_lock_held(app):
        response = client.deliver("payment_created")
        rejected = client.deliver("payment_created", {"ID": "x"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "12"
    assert response.json == {"status": "error", "message": "The inbox is unavailable; retry later."}
    # A refusal we cannot record would be final for DealPOS: 503 too, not 422.
    assert rejected.status_code == 503
    assert ran == [] and inbox.counts()["pending"] == 0
    assert client.deliver("payment_created").status_code == 200  # DealPOS's retry
    assert ran == ["ran"]


def test_a_read_only_store_answers_503(make_app: MakeApp) -> None:
    app = make_app()
    engine = get_state(app).require_inbox().engine
    read_only = (
        "PRAGMA query_only = ON"
        if engine.dialect.name == "sqlite"
        else "SET default_transaction_read_only = on"
    )
    sa.event.listen(engine, "connect", lambda dbapi, record: dbapi.execute(read_only))
    response = app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_rejected_deliveries_are_kept_and_replayed_after_a_fix(
    make_app: MakeApp, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    database = {"POSWEB_DATABASE_URL": app.config["POSWEB_DATABASE_URL"]}
    body = b'{"ID": "p-9", "Amount": 10}'
    response = app.test_client().deliver("payment_created", body)  # type: ignore[attr-defined]
    assert response.status_code == 422
    (row,) = get_state(app).require_inbox().select()
    assert row.status == "rejected" and row.raw == body
    assert row.errors is not None and row.errors["InvoiceID"] == [
        "Missing data for required field."
    ]
    # A fix is deployed (here: a permissive schema) and the app restarts...
    fixed = dataclasses.replace(EVENTS["payment_created"], schema=OpenSchema)
    monkeypatch.setitem(EVENTS, "payment_created", fixed)  # type: ignore[index]
    restarted = Flask(__name__)
    restarted.config.update(POSWEB_API_KEYS=["k"], **database)
    posweb = PosWeb()
    seen: list[WebhookEvent] = []
    posweb.on("payment_created")(lambda sender, event, **extra: seen.append(event))
    restarted.register_blueprint(posweb.blueprint)
    restarted.test_client_class = PosWebClient
    try:
        # ... and DealPOS (or an operator) sends it again.
        again = restarted.test_client().deliver("payment_created", body)  # type: ignore[attr-defined]
        assert again.status_code == 200
        assert [e.id for e in seen] == [row.id]
        assert stored(restarted, row.id).status == "processed"
    finally:
        get_state(restarted).close()


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
    app = make_app(POSWEB_DISPATCH="worker", POSWEB_RETRY_BACKOFF=0.05)
    flaky, steady = Flaky(failures=2), Flaky(failures=0)
    posweb.on("payment_created")(flaky)
    posweb.on("payment_created")(steady)
    response = app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert response.status_code == 200 and flaky.calls == []  # the worker dispatches
    delivery_id = int(response.headers["X-PosWeb-Delivery"])
    assert drain(app) == 1
    time.sleep(0.06)  # backoff 0.05 s
    assert drain(app) == 1
    time.sleep(0.11)  # doubled
    assert drain(app) == 1
    assert [e.attempt for e in flaky.calls] == [1, 2, 3]
    assert [e.attempt for e in steady.calls] == [1]
    assert all(e.id == delivery_id and not e.is_replay for e in flaky.calls)
    outcomes = [
        (a.receiver.endswith("#2"), a.attempt, a.ok)
        for a in get_state(app).require_inbox().attempts_of(delivery_id)
    ]
    assert outcomes == [(False, 1, False), (True, 1, True), (False, 2, False), (False, 3, True)]
    delivery = stored(app, delivery_id)
    assert delivery.status == "processed" and delivery.attempts == 3


def test_after_max_attempts_a_delivery_is_dead_and_says_so(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_DISPATCH="worker", POSWEB_MAX_ATTEMPTS=2, POSWEB_RETRY_BACKOFF=0.01)
    flaky = Flaky(failures=99)
    posweb.on("payment_deleted")(flaky)
    response = app.test_client().deliver("payment_deleted")  # type: ignore[attr-defined]
    delivery_id = int(response.headers["X-PosWeb-Delivery"])
    with captured_signals(app, signals.webhook_dead) as dead:
        drain(app)
        time.sleep(0.05)
        drain(app)
        time.sleep(0.05)
        assert drain(app) == 0  # dead: never taken again
    assert len(flaky.calls) == 2
    assert stored(app, delivery_id).status == "dead"
    ((_, kwargs),) = dead
    assert kwargs["event"].id == delivery_id and len(kwargs["failed"]) == 1


def test_backoff_doubles_and_is_capped(make_app: MakeApp) -> None:
    app = make_app(POSWEB_RETRY_BACKOFF=30, POSWEB_RETRY_MAX_DELAY=200)
    dispatcher = get_state(app).require_dispatcher()
    assert [dispatcher.backoff(n) for n in range(1, 6)] == [30, 60, 120, 200, 200]


def test_the_same_body_twice_at_once_is_stored_and_handled_once(app: Flask, posweb: PosWeb) -> None:
    calls: list[int | None] = []

    @posweb.on("invoice_created")
    def slow(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
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
    app = make_app(POSWEB_DISPATCH="thread", POSWEB_POLL_INTERVAL=0.05)
    release = threading.Event()
    seen: list[str] = []

    @posweb.on("shift_closed")
    def waits(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        release.wait(5)
        seen.append(threading.current_thread().name)

    response = app.test_client().deliver("shift_closed")  # type: ignore[attr-defined]
    assert response.status_code == 200 and seen == []
    release.set()
    wait_for(lambda: stored(app, response.headers["X-PosWeb-Delivery"]).status == "processed")
    assert seen == ["posweb-dispatch"]


def test_a_delivery_orphaned_by_a_dead_process_is_picked_up(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_LEASE=0.3, POSWEB_POLL_INTERVAL=0.05)
    seen: list[int] = []
    posweb.on("payment_created")(lambda sender, event, **extra: seen.append(event.attempt))
    state = get_state(app)
    # A request stored this delivery and died before running its receivers.
    orphan = state.require_inbox().admit(
        "payment_created", sample("payment_created"), {}, owner="dead", lease=0.3
    )
    assert state.background is not None
    state.background.ensure_started()
    wait_for(lambda: stored(app, orphan.delivery.id).status == "processed")
    assert seen == [2]


def test_a_stored_delivery_that_no_longer_validates_is_rejected(make_app: MakeApp) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    inbox = get_state(app).require_inbox()
    delivery = inbox.admit("payment_created", b'{"ID": ""}', {}).delivery
    assert drain(app) == 1
    after = stored(app, delivery.id)
    assert after.status == "rejected" and after.errors is not None and "ID" in after.errors


def test_a_long_dispatch_renews_its_lease(make_app: MakeApp, posweb: PosWeb) -> None:
    app = make_app(POSWEB_LEASE=0.4, POSWEB_DISPATCH="worker")
    intruder: list[Delivery | None] = []

    @posweb.on("payment_created")
    def slow(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        time.sleep(0.3)

    @posweb.on("payment_created")
    def then_checks(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        time.sleep(0.2)  # past the first lease: it was renewed before this receiver
        assert event.id is not None
        intruder.append(get_state(sender).require_inbox().claim(event.id, "intruder", 1))

    app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert drain(app) == 1
    assert intruder == [None]
