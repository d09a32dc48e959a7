"""The store contract: the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import typing as t
from collections.abc import Iterator

import pytest

from flask_posweb.exceptions import StoreError
from flask_posweb.inbox import Attempt
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import dedup_key
from flask_posweb.inbox import utcnow


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def inbox(database_url: str, clock: Clock) -> Iterator[Inbox]:
    store = Inbox.from_url(database_url, rejected_max_count=3, rejected_max_age=3600, clock=clock)
    yield store
    store.close()


def admit(inbox: Inbox, body: bytes = b'{"ID": "1"}', **kwargs: t.Any) -> t.Any:
    return inbox.admit("payment_created", body, {"User-Agent": "DealPOS"}, **kwargs)


def outcome(name: str, ok: bool, attempt: int = 1, generation: int = 0) -> Attempt:
    return Attempt(name, attempt, generation, ok, None if ok else "Traceback...", utcnow(), 1.5)


def test_admit_stores_once_per_event_and_body(inbox: Inbox) -> None:
    first = admit(inbox)
    again = admit(inbox)
    other_event = inbox.admit("payment_deleted", b'{"ID": "1"}', {})
    other_body = admit(inbox, b'{"ID": "2"}')
    assert first.new and not again.new and other_event.new and other_body.new
    assert again.delivery.id == first.delivery.id
    assert first.delivery.dedup_key == dedup_key("payment_created", b'{"ID": "1"}')
    stored = inbox.get(first.delivery.id)
    assert stored is not None and stored.raw == b'{"ID": "1"}' and stored.status == "pending"
    assert stored.headers == {"User-Agent": "DealPOS"}


def test_concurrent_admissions_of_one_body_store_it_once(inbox: Inbox) -> None:
    barrier = threading.Barrier(8)

    def race(_: int) -> bool:
        barrier.wait()
        return bool(admit(inbox, b'{"race": true}').new)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(race, range(8)))
    assert results.count(True) == 1
    assert inbox.counts()["pending"] == 1


def test_a_new_delivery_leased_to_the_request_is_not_taken_by_others(
    inbox: Inbox, clock: Clock
) -> None:
    delivery = admit(inbox, owner="request-1", lease=60).delivery
    assert delivery.attempts == 1
    assert inbox.claim_due("worker", 60) == []
    assert inbox.claim(delivery.id, "worker", 60) is None
    clock.advance(61)  # the request's process died: its lease ran out
    taken = inbox.claim_due("worker", 60)
    assert [d.id for d in taken] == [delivery.id] and taken[0].attempts == 2


def test_claim_due_takes_only_due_deliveries_oldest_first(inbox: Inbox, clock: Clock) -> None:
    ids = [admit(inbox, f'{{"n": {n}}}'.encode()).delivery.id for n in range(5)]
    first = inbox.claim_due("a", 60, limit=2)
    second = inbox.claim_due("b", 60, limit=10)
    assert [d.id for d in first] == ids[:2] and [d.id for d in second] == ids[2:]
    assert inbox.claim_due("c", 60) == []
    inbox.finish(
        first[0],
        "a",
        [outcome("r", False)],
        "failed",
        next_attempt_at=clock() + dt.timedelta(seconds=30),
    )
    assert inbox.claim_due("c", 60) == []
    clock.advance(31)
    assert [d.id for d in inbox.claim_due("c", 60)] == [ids[0]]


def test_concurrent_dispatchers_never_share_a_delivery(inbox: Inbox) -> None:
    for n in range(60):
        admit(inbox, f'{{"n": {n}}}'.encode())
    barrier = threading.Barrier(6)

    def worker(name: str) -> list[int]:
        barrier.wait()
        taken: list[int] = []
        while batch := inbox.claim_due(name, 60, limit=3):
            taken.extend(d.id for d in batch)
        return taken

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(worker, [f"w{i}" for i in range(6)]))
    everything = [i for r in results for i in r]
    assert len(everything) == len(set(everything)) == 60


def test_finish_records_outcomes_and_releases_the_lease(inbox: Inbox) -> None:
    delivery = admit(inbox, owner="me", lease=60).delivery
    assert inbox.finish(
        delivery,
        "me",
        [outcome("a", True), outcome("b", False)],
        "failed",
        next_attempt_at=utcnow(),
    )
    stored = inbox.get(delivery.id)
    assert stored is not None and stored.status == "failed" and stored.locked_by is None
    assert inbox.succeeded(stored) == {"a"}
    assert [(a.receiver, a.ok) for a in inbox.attempts_of(delivery.id)] == [
        ("a", True),
        ("b", False),
    ]


def test_a_lost_lease_writes_nothing(inbox: Inbox, clock: Clock) -> None:
    delivery = admit(inbox, owner="slow", lease=10).delivery
    clock.advance(11)
    assert inbox.claim(delivery.id, "fast", 60) is not None
    assert not inbox.finish(delivery, "slow", [outcome("a", True)], "processed")
    stored = inbox.get(delivery.id)
    assert stored is not None and stored.locked_by == "fast" and stored.status == "pending"
    # The dispatcher that took over decides; it runs receiver "a" again (at least once).
    assert inbox.succeeded(stored) == set() and stored.outcomes == []


def test_extend_renews_only_the_owners_lease(inbox: Inbox, clock: Clock) -> None:
    delivery = admit(inbox, owner="me", lease=10).delivery
    clock.advance(8)
    assert inbox.extend(delivery.id, "me", 10)
    assert not inbox.extend(delivery.id, "someone", 10)
    clock.advance(8)
    assert inbox.claim(delivery.id, "other", 10) is None  # renewed: still mine


def test_reject_keeps_body_and_errors_and_is_bounded(inbox: Inbox, clock: Clock) -> None:
    first = inbox.reject("payment_created", b"{}", {}, {"Amount": ["Missing."]})
    assert first.status == "rejected" and first.errors == {"Amount": ["Missing."]}
    again = inbox.reject("payment_created", b"{}", {}, {"Amount": ["Still missing."]})
    assert again.id == first.id and again.errors == {"Amount": ["Still missing."]}
    for n in range(4):
        inbox.reject("payment_created", f'{{"n": {n}}}'.encode(), {}, {})
    rejected = inbox.select(Filter(status=["rejected"]))
    assert len(rejected) == 3 and first.id not in {d.id for d in rejected}  # count bound
    clock.advance(3601)
    inbox.reject("invoice_created", b"[]", {}, {})
    assert [d.event for d in inbox.select(Filter(status=["rejected"]))] == ["invoice_created"]


def test_rejected_rows_are_never_dispatched(inbox: Inbox) -> None:
    inbox.reject("payment_created", b"{}", {}, {})
    assert inbox.claim_due("w", 60) == []


def test_retry_now(inbox: Inbox, clock: Clock) -> None:
    failed = admit(inbox, b"1", owner="me", lease=60).delivery
    inbox.finish(failed, "me", [], "failed", next_attempt_at=clock() + dt.timedelta(hours=1))
    dead = admit(inbox, b"2", owner="me", lease=60).delivery
    inbox.finish(dead, "me", [], "dead")
    rejected = inbox.reject("payment_created", b"3", {}, {"x": ["y"]})
    processed = admit(inbox, b"4", owner="me", lease=60).delivery
    inbox.finish(processed, "me", [], "processed")
    assert [inbox.retry_now(d.id) for d in (failed, dead, rejected, processed)] == [True] * 3 + [
        False
    ]
    due = {d.id: d for d in inbox.claim_due("w", 60)}
    assert set(due) == {failed.id, dead.id, rejected.id}
    assert due[dead.id].attempts == 1 and due[failed.id].attempts == 2  # fresh budget when dead
    assert due[rejected.id].status == "pending" and due[rejected.id].errors is None


def test_mark_replay(inbox: Inbox) -> None:
    processed = admit(inbox, b"1", owner="me", lease=60).delivery
    inbox.finish(processed, "me", [outcome("a", True)], "processed")
    dead = admit(inbox, b"2", owner="me", lease=60).delivery
    inbox.finish(dead, "me", [outcome("a", True), outcome("b", False)], "dead")
    busy = admit(inbox, b"3", owner="busy", lease=60).delivery
    assert inbox.mark_replay(Filter(ids=[processed.id, dead.id, busy.id])) == 2
    replayed = {d.id: d for d in inbox.claim_due("w", 60)}
    assert set(replayed) == {processed.id, dead.id}
    assert replayed[processed.id].generation == 1 and replayed[processed.id].replay
    assert inbox.succeeded(replayed[processed.id]) == set()  # everything runs again
    assert inbox.succeeded(replayed[dead.id]) == {"a"}  # only what failed runs again
    assert replayed[dead.id].attempts == 1


def test_filters_and_counts(inbox: Inbox, clock: Clock) -> None:
    early = admit(inbox, b"1").delivery
    clock.advance(3600)
    late = inbox.admit("invoice_created", b"2", {}).delivery
    inbox.reject("invoice_created", b"3", {}, {})
    assert [d.id for d in inbox.select(Filter(event=["invoice_created"], status=["pending"]))] == [
        late.id
    ]
    assert [d.id for d in inbox.select(Filter(until=clock() - dt.timedelta(minutes=1)))] == [
        early.id
    ]
    assert len(inbox.select(Filter(since=clock() - dt.timedelta(minutes=1)))) == 2
    assert inbox.ids(Filter(status=["pending"])) == [early.id, late.id]
    assert inbox.counts() == {"pending": 2, "failed": 0, "processed": 0, "dead": 0, "rejected": 1}


def test_prune_deletes_old_processed_deliveries_and_their_attempts(
    inbox: Inbox, clock: Clock
) -> None:
    old = admit(inbox, b"old", owner="me", lease=60).delivery
    inbox.finish(old, "me", [outcome("a", True)], "processed")
    failed = admit(inbox, b"failed", owner="me", lease=60).delivery
    inbox.finish(failed, "me", [outcome("a", False)], "failed")
    clock.advance(86400 * 31)
    recent = admit(inbox, b"recent", owner="me", lease=60).delivery
    inbox.finish(recent, "me", [outcome("a", True)], "processed")
    assert inbox.prune(older_than=86400 * 30, batch=1) == 1
    assert inbox.get(old.id) is None and inbox.attempts_of(old.id) == []
    assert inbox.get(failed.id) is not None and inbox.get(recent.id) is not None


def test_rows_that_no_dispatcher_may_take(inbox: Inbox) -> None:
    remembered = inbox.admit("loyalty_order_complete", b"{}", {}, key="order-1", dispatch=False)
    assert remembered.delivery.dedup_key == "loyalty_order_complete:order-1"
    assert inbox.claim_due("w", 60) == []
    assert inbox.admit("loyalty_order_complete", b"{other}", {}, key="order-1").new is False


def sqlite_inbox(path: t.Any, **kwargs: t.Any) -> Inbox:
    store = Inbox.from_url(f"sqlite:///{path}", **kwargs)
    store.counts()  # creates the file and tables
    return store


def test_read_only_store(tmp_path: t.Any) -> None:
    sqlite_inbox(tmp_path / "inbox.sqlite3").engine.dispose()
    read_only = Inbox.from_url(f"sqlite:///file:{tmp_path / 'inbox.sqlite3'}?mode=ro&uri=true")
    with pytest.raises(StoreError, match="unavailable"):
        read_only.admit("payment_created", b"{}", {})


def test_store_locked_past_its_timeout(tmp_path: t.Any) -> None:
    store = sqlite_inbox(tmp_path / "inbox.sqlite3", timeout=0.2)
    with store.engine.connect() as holder:
        holder.exec_driver_sql("SELECT 1")  # BEGIN IMMEDIATE: holds the write lock
        with pytest.raises(StoreError, match="OperationalError"):
            store.admit("payment_created", b"{}", {})
        holder.rollback()
    assert store.admit("payment_created", b"{}", {}).new


def test_store_disk_full(tmp_path: t.Any) -> None:
    import sqlalchemy as sa

    store = sqlite_inbox(tmp_path / "inbox.sqlite3")
    store.engine.dispose()

    @sa.event.listens_for(store.engine, "connect")
    def full(dbapi_connection: t.Any, _record: t.Any) -> None:
        # SQLite's own way to say "disk full": no page may be added.
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    with pytest.raises(StoreError, match="unavailable"):
        store.admit("payment_created", b"x" * 100_000, {})


def test_store_server_down() -> None:
    down = Inbox.from_url("postgresql://nobody:x@127.0.0.1:9/none", timeout=1)
    with pytest.raises(StoreError, match="unavailable"):
        down.admit("payment_created", b"{}", {})


def test_rows_stored_at_the_same_moment_share_one_commit(inbox: Inbox) -> None:
    import sqlalchemy as sa

    commits: list[int] = []
    sa.event.listen(inbox.engine, "commit", lambda connection: commits.append(1))
    inbox.counts()
    commits.clear()
    group = inbox._commits
    pool = concurrent.futures.ThreadPoolExecutor(8)
    with group._commit_lock:  # a commit in progress: newcomers queue behind it
        futures = [pool.submit(admit, inbox, f'{{"n": {n}}}'.encode()) for n in range(8)]
        wait = time_limit(10)
        while len(group._queue) < 8:
            wait()
        assert commits == []
    # The lock is free: one of the eight commits them all.
    results = [f.result(timeout=30) for f in futures]
    pool.shutdown()
    assert all(a.new for a in results) and len({a.delivery.id for a in results}) == 8
    assert commits == [1]


def test_a_failed_group_commit_fails_every_row_in_it(tmp_path: t.Any) -> None:
    store = sqlite_inbox(tmp_path / "inbox.sqlite3", timeout=0.2)
    with store.engine.connect() as holder:
        holder.exec_driver_sql("SELECT 1")  # the write lock is taken elsewhere
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(admit, store, f"{n}".encode()) for n in range(4)]
            errors = [f.exception(timeout=30) for f in futures]
        holder.rollback()
    assert all(isinstance(e, StoreError) for e in errors)
    assert store.counts()["pending"] == 0


def test_only_outcomes_are_committed_without_waiting_for_the_disk(inbox: Inbox) -> None:
    import sqlalchemy as sa

    statements: list[str] = []
    sa.event.listen(
        inbox.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *args: statements.append(statement),
    )
    delivery = admit(inbox, owner="me", lease=60).delivery
    stored = len(statements)
    inbox.finish(delivery, "me", [outcome("a", True)], "processed", durable=False)
    relaxed = " ".join(statements[stored:])
    durable = " ".join(statements[:stored])
    if inbox.engine.dialect.name == "sqlite":
        assert "synchronous=NORMAL" in relaxed and "synchronous=NORMAL" not in durable
    else:
        assert "synchronous_commit TO OFF" in relaxed and "synchronous_commit" not in durable


def time_limit(seconds: float) -> t.Callable[[], None]:
    import time

    deadline = time.monotonic() + seconds

    def wait() -> None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)

    return wait
