"""The store's contract, on SQLite and on PostgreSQL: leases, ids, retention,
reads beside writes, and a store that cannot write.

Time is a :class:`~tests.conftest.Clock` the tests move by hand.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import fcntl
import os
import pathlib
import threading
import time
import typing as t

import pytest
import sqlalchemy as sa

from flask_posweb.exceptions import StoreError
from flask_posweb.inbox import Attempt
from flask_posweb.inbox import Deadline
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import Retention
from flask_posweb.inbox import utcnow
from flask_posweb.inbox.writer import GroupWriter

from .conftest import LEDGER
from .conftest import Clock
from .conftest import run_together


def admit(inbox: Inbox, body: bytes = b"{}", **kwargs: t.Any) -> t.Any:
    return inbox.admit("payment_created", body, {"X": "1"}, receivers=LEDGER, **kwargs)


def outcome(receiver: str, ok: bool, attempt: int = 1) -> Attempt:
    return Attempt(receiver, attempt, 0, ok, None if ok else "Traceback...", utcnow(), 1.0)


def test_admit_stores_a_pending_delivery(inbox: Inbox, clock: Clock) -> None:
    admission = admit(inbox, b'{"a": 1}')
    delivery = admission.delivery
    assert admission.new and delivery.status == "pending" and delivery.inbox == "default"
    assert delivery.raw == b'{"a": 1}' and delivery.headers == {"X": "1"}
    assert delivery.receiver_set == LEDGER.key and delivery.attempts == 0
    assert inbox.get(delivery.id) == delivery


def test_concurrent_admissions_of_one_body_store_it_once(inbox: Inbox) -> None:
    results: list[t.Any] = []
    barrier = threading.Barrier(8)

    def store() -> None:
        barrier.wait()
        results.append(admit(inbox, b'{"same": true}'))

    run_together(store, 8)
    assert sum(a.new for a in results) == 1
    assert len({a.delivery.id for a in results}) == 1
    assert inbox.counts()["pending"] == 1


def test_a_new_delivery_leased_to_the_request_is_not_taken_by_others(inbox: Inbox) -> None:
    delivery = admit(inbox, owner="request-1", lease=60).delivery
    assert delivery.locked_by == "request-1" and delivery.attempts == 1
    assert inbox.claim_due("worker", 60, [LEDGER.key]) is None
    assert inbox.claim(delivery.id, "worker", 60, [LEDGER.key]) is None


def test_claim_due_takes_due_deliveries_oldest_first(inbox: Inbox, clock: Clock) -> None:
    first = admit(inbox, b"1").delivery
    clock.advance(1)
    second = admit(inbox, b"2").delivery
    taken = inbox.claim_due("w", 60, [LEDGER.key])
    assert taken is not None and taken.id == first.id and taken.attempts == 1
    assert taken.locked_by == "w"
    assert inbox.finish(taken, "w", [outcome("ledger", False)], "failed", retry_in=30)
    again = inbox.claim_due("w", 60, [LEDGER.key])
    assert again is not None and again.id == second.id  # the failed one is not due yet
    clock.advance(31)
    assert inbox.finish(again, "w", [], "processed")
    retried = inbox.claim_due("w", 60, [LEDGER.key])
    assert retried is not None and retried.id == first.id and retried.attempts == 2


def test_the_relay_sends_an_unsent_task_at_once_and_a_retry_when_due(
    inbox: Inbox, clock: Clock
) -> None:
    """Celery mode: a delivery counts as sent when stored. A send that failed, or
    an attempt's recorded outcome, clears that, so the relay does not wait for
    POSWEB_CELERY_REQUEUE_AFTER (0.2's first cut made retries wait a minute)."""
    delivery = admit(inbox, enqueued=True).delivery
    assert inbox.take_for_relay([LEDGER.key], requeue_after=60) == []  # its task is on its way
    inbox.mark_unsent([delivery.id])
    assert inbox.take_for_relay([LEDGER.key], 60) == [(delivery.id, None)]
    assert inbox.take_for_relay([LEDGER.key], 60) == []  # stamped by the take
    taken = inbox.claim(delivery.id, "w", 60, [LEDGER.key])
    assert taken is not None
    assert inbox.finish(taken, "w", [outcome("ledger", False)], "failed", retry_in=30)
    assert inbox.take_for_relay([LEDGER.key], 60) == []  # not due yet
    clock.advance(31)
    assert inbox.take_for_relay([LEDGER.key], 60) == [(delivery.id, None)]


def test_the_backlog_counts_what_waits_and_since_when_it_is_due(
    inbox: Inbox, clock: Clock
) -> None:
    assert inbox.backlog() == (0, 0, None, 0, 0)
    first = admit(inbox, b"1").delivery
    clock.advance(5)
    admit(inbox, b"2")
    failing = inbox.claim_due("w", 60, [LEDGER.key])
    assert failing is not None and failing.id == first.id
    inbox.finish(failing, "w", [outcome("ledger", False)], "failed", retry_in=30)
    backlog = inbox.backlog()  # the retry waits its backoff: only the second is due
    assert (backlog.waiting, backlog.due, backlog.dead) == (2, 1, 0)
    assert backlog.lag(clock()) == 0
    clock.advance(40)
    backlog = inbox.backlog()  # due 10 s ago, then 40 s ago
    assert backlog.due == 2 and backlog.lag(clock()) == pytest.approx(40)
    again = inbox.claim(first.id, "w", 60, [LEDGER.key])
    assert again is not None and inbox.finish(again, "w", [outcome("ledger", False)], "dead")
    assert inbox.backlog()[:2] == (1, 1) and inbox.backlog().dead == 1


def test_only_deliveries_whose_receivers_a_dispatcher_has_are_taken(inbox: Inbox) -> None:
    delivery = admit(inbox).delivery
    assert inbox.claim_due("w", 60, ["another-set"]) is None
    assert inbox.claim(delivery.id, "w", 60, ["another-set"]) is None
    assert inbox.claim(delivery.id, "w", 60, ["another-set", LEDGER.key]) is not None


def test_concurrent_dispatchers_never_share_a_delivery(inbox: Inbox) -> None:
    ids = {admit(inbox, f"{n}".encode()).delivery.id for n in range(40)}
    taken: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        while (
            delivery := inbox.claim_due(f"w{threading.get_ident()}", 60, [LEDGER.key])
        ) is not None:
            with lock:
                taken.append(delivery.id)

    run_together(work, 4)
    assert sorted(taken) == sorted(ids)


def test_finish_records_outcomes_and_releases_the_lease(inbox: Inbox) -> None:
    delivery = admit(inbox, owner="me", lease=60).delivery
    assert inbox.finish(delivery, "me", [outcome("ledger", True)], "processed")
    after = inbox.get(delivery.id)
    assert after is not None and after.status == "processed" and after.locked_by is None
    assert [(a.receiver, a.ok) for a in inbox.attempts(delivery.id)] == [("ledger", True)]
    assert after.next_attempt_at is None


def test_a_lost_lease_writes_nothing(inbox: Inbox, clock: Clock) -> None:
    delivery = admit(inbox, owner="slow", lease=10).delivery
    clock.advance(11)
    assert inbox.claim(delivery.id, "fast", 60, [LEDGER.key]) is not None
    assert not inbox.finish(delivery, "slow", [outcome("ledger", True)], "processed")
    after = inbox.get(delivery.id)
    assert after is not None and after.status == "pending" and after.locked_by == "fast"


def test_extend_renews_only_the_owners_lease(inbox: Inbox, clock: Clock) -> None:
    delivery = admit(inbox, owner="me", lease=10).delivery
    clock.advance(8)
    assert inbox.extend(delivery.id, "me", 10)
    clock.advance(8)  # 16 s after the first lease: still mine, it was renewed
    assert inbox.claim(delivery.id, "other", 60, [LEDGER.key]) is None
    assert not inbox.extend(delivery.id, "other", 10)


def test_ids_are_never_given_twice(inbox: Inbox, clock: Clock) -> None:
    """Inbox 0.2, finding 2: SQLite reused the ids of pruned newest rows."""
    ids = [admit(inbox, f"{n}".encode()).delivery.id for n in range(3)]
    for delivery_id in ids:
        delivery = inbox.claim(delivery_id, "w", 60, [LEDGER.key])
        assert delivery is not None and inbox.finish(delivery, "w", [], "processed")
    clock.advance(3600)
    assert inbox.housekeep(Retention(60, 60, 60, 10))["processed"] == 3
    assert inbox.deliveries() == []
    new = admit(inbox, b"new").delivery
    assert new.id > max(ids)


def test_reject_keeps_body_and_errors(inbox: Inbox) -> None:
    kept = inbox.reject("payment_created", b"nope", {"X": "1"}, {"_body": ["not JSON"]})
    assert kept.status == "rejected" and kept.raw == b"nope" and kept.next_attempt_at is None
    again = inbox.reject("payment_created", b"nope", {}, {"_body": ["not JSON"]})
    assert again == kept  # the same refusal, DealPOS's retry: kept once
    assert inbox.claim_due("w", 60, [LEDGER.key]) is None  # never dispatched
    assert inbox.counts()["rejected"] == 1


def test_the_same_bytes_refused_for_another_reason_are_another_refusal(inbox: Inbox) -> None:
    """A stranger's review: a 415 and then a 422 of the same bytes made one row
    with the first request's headers and the second one's errors."""
    first = inbox.reject(
        "payment_created", b"{}", {"Content-Type": "text/plain"}, {"_body": ["415"]}
    )
    second = inbox.reject("payment_created", b"{}", {"Content-Type": "application/json"},
                          {"Amount": ["Missing data for required field."]})  # fmt: skip
    assert second.id != first.id
    assert inbox.get(first.id).headers == {"Content-Type": "text/plain"}  # type: ignore[union-attr]
    assert inbox.get(second.id).errors == {"Amount": ["Missing data for required field."]}  # type: ignore[union-attr]
    assert inbox.counts()["rejected"] == 2


def test_a_refusal_after_its_twin_was_replayed_is_kept(inbox: Inbox) -> None:
    """A stranger's review: once the rejected row was replayed (and processed), the
    same refusal pointed at the processed delivery and was not kept at all."""
    errors = {"_body": ["415"]}
    first = inbox.reject("payment_created", b"{}", {}, errors)
    assert inbox.replay(Filter(ids=[first.id])) == 1
    taken = inbox.claim(first.id, "w", 60, [LEDGER.key])
    assert taken is not None and inbox.finish(taken, "w", [], "processed")
    again = inbox.reject("payment_created", b"{}", {}, errors)
    assert again.id != first.id and again.status == "rejected" and again.errors == errors
    assert (
        inbox.reject("payment_created", b"{}", {}, errors).id == again.id
    )  # and it is the twin now
    assert inbox.counts()["rejected"] == 1 and inbox.counts()["processed"] == 1


def test_replay_follows_the_state_machine(inbox: Inbox) -> None:
    done = admit(inbox, b"1", owner="w", lease=60).delivery
    assert inbox.finish(done, "w", [outcome("ledger", True)], "processed")
    assert inbox.replay(Filter(ids=[done.id])) == 1
    after = inbox.get(done.id)
    assert after is not None
    assert (after.status, after.generation, after.replay, after.attempts) == ("pending", 1, True, 0)
    assert after.succeeded == frozenset()  # a new generation: every receiver runs again
    held = admit(inbox, b"2", owner="busy", lease=60).delivery
    assert inbox.replay(Filter(ids=[held.id])) == 0  # held by a dispatcher: left alone


def test_reads_never_wait_for_a_writer(database_url: str, clock: Clock) -> None:
    """Inbox 0.2, finding 8: 0.1 took the write lock for every read."""
    inbox = Inbox.from_url(database_url, clock=clock, timeout=30)
    try:
        admit(inbox)
        entered, release = threading.Event(), threading.Event()

        def hold(connection: sa.Connection) -> None:
            connection.execute(sa.text("UPDATE posweb_deliveries SET attempts = attempts"))
            entered.set()
            release.wait(30)

        writer = threading.Thread(target=inbox.database.write, args=(hold,))
        writer.start()
        assert entered.wait(30)
        started = time.monotonic()
        try:
            counts, listed = inbox.counts(), inbox.deliveries()
        finally:
            release.set()
            writer.join()
        assert time.monotonic() - started < 2  # no wait for the writer (it held for good)
        assert counts["pending"] == 1 and len(listed) == 1
    finally:
        inbox.close()


def test_housekeeping_deletes_only_finished_deliveries(inbox: Inbox, clock: Clock) -> None:
    rows = {}
    for status in ("processed", "unhandled", "dead", "failed"):
        delivery = admit(inbox, status.encode(), owner="w", lease=60).delivery
        assert inbox.finish(delivery, "w", [], status, retry_in=1 if status == "failed" else None)  # type: ignore[arg-type]
        rows[status] = delivery.id
    rows["pending"] = admit(inbox, b"pending").delivery.id
    rows["rejected"] = inbox.reject("payment_created", b"bad", {}, {"_body": ["x"]}).id
    clock.advance(400 * 86400)
    deleted = inbox.housekeep(Retention(86400, 86400, 86400, 10))
    # The scopes of deleted deliveries go with them; those of the others once
    # they are past the duplicate window.
    assert deleted == {
        "processed": 1, "unhandled": 1, "dead": 1, "rejected": 1, "duplicates": 2,
        "loyalty answers": 0,
    }  # fmt: skip
    left = {d.id for d in inbox.deliveries()}
    assert left == {rows["failed"], rows["pending"]}  # still to be retried: never deleted


def test_housekeeping_keeps_dead_ones_longer(inbox: Inbox, clock: Clock) -> None:
    delivery = admit(inbox, owner="w", lease=60).delivery
    assert inbox.finish(delivery, "w", [], "dead")
    clock.advance(2 * 86400)
    assert inbox.housekeep(Retention(86400, 7 * 86400, 86400, 10))["dead"] == 0
    clock.advance(6 * 86400)
    assert inbox.housekeep(Retention(86400, 7 * 86400, 86400, 10))["dead"] == 1


def test_rejected_ones_are_trimmed_to_their_count(inbox: Inbox) -> None:
    for n in range(5):
        inbox.reject("payment_created", f"bad {n}".encode(), {}, {"_body": ["x"]})
    assert inbox.housekeep(Retention(86400, 86400, 86400, 2))["rejected"] == 3
    assert [d.raw for d in inbox.deliveries()] == [b"bad 4", b"bad 3"]


def test_housekeeping_works_in_bounded_batches(inbox: Inbox, clock: Clock) -> None:
    for n in range(7):
        delivery = admit(inbox, f"{n}".encode(), owner="w", lease=60).delivery
        assert inbox.finish(delivery, "w", [], "processed")
    clock.advance(86401)
    statements: list[str] = []
    sa.event.listen(
        inbox.database.engines.durable, "before_cursor_execute", lambda *a: statements.append(a[2])
    )
    assert inbox.housekeep(Retention(86400, 86400, 86400, 10), batch=3)["processed"] == 7
    deletes = [s for s in statements if s.startswith("DELETE FROM posweb_deliveries")]
    assert len(deletes) >= 3  # 3 + 3 + 1


def test_every_statement_goes_through_sqlalchemy(inbox: Inbox) -> None:
    """Inbox 0.2: no statement on the driver's cursor behind SQLAlchemy's back."""
    seen: list[str] = []
    for engine in {
        inbox.database.engines.read,
        inbox.database.engines.durable,
        inbox.database.engines.relaxed,
    }:
        sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    delivery = admit(inbox, owner="w", lease=60).delivery
    inbox.finish(delivery, "w", [outcome("ledger", True)], "processed")
    inbox.counts()
    admissions = [s for s in seen if "INSERT INTO posweb_deliveries" in s]
    claims = [s for s in seen if "INSERT INTO posweb_duplicates" in s]
    assert admissions and claims
    if inbox.database.dialect == "postgresql":
        # The durable path at the speed of its store: the row and its claim in one
        # statement, one round trip, seen by SQLAlchemy's events all the same.
        assert admissions == claims and admissions[0].startswith("WITH claim AS")
    assert any(s.startswith("UPDATE posweb_deliveries") for s in seen)
    assert any(s.startswith("SELECT posweb_deliveries.merchant") for s in seen)  # counts


# -- a store that cannot write: 503 (tested through the app in test_store_faults.py) --


@pytest.mark.root
def test_a_read_only_folder_is_a_store_error(tmp_path: t.Any) -> None:
    """Inbox 0.2, finding 9: 0.1 let the lock file's OSError escape (a 500)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    store = Inbox.from_url(f"sqlite:///{folder / 'inbox.sqlite3'}")
    store.counts()
    store.close()
    with _read_only(folder):
        with pytest.raises(StoreError):
            admit(store)
    store.close()


@contextlib.contextmanager
def _read_only(folder: t.Any) -> t.Iterator[None]:
    """The folder mounted read-only over itself (root ignores permission bits)."""
    path = str(folder)
    assert os.system(f"mount --bind {path} {path} && mount -o remount,ro,bind {path}") == 0
    try:
        yield
    finally:
        os.system(f"umount -l {path}")


def test_the_timeout_bounds_the_whole_wait(tmp_path: t.Any) -> None:
    """Inbox 0.2, finding 10: 0.1's waits stacked per lock layer (2 s waited 3.5 s)."""
    store = Inbox.from_url(f"sqlite:///{tmp_path / 'inbox.sqlite3'}", timeout=1)
    store.counts()
    lock = os.open(str(tmp_path / "inbox.sqlite3") + "-posweb.lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another process writing, for good
    waited: list[float] = []

    def write() -> None:
        started = time.monotonic()
        with pytest.raises(StoreError, match="busy"):
            admit(store, f"{threading.get_ident()}".encode())
        waited.append(time.monotonic() - started)

    try:
        run_together(write, 6)  # threads queue behind each other, yet none waits longer
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    assert len(waited) == 6 and all(0.9 < w < 2.5 for w in waited), waited
    assert admit(store, b"after").new
    store.close()


@contextlib.contextmanager
def foreign_write_lock(url: str, seconds: float) -> t.Iterator[None]:
    """A connection that is not the inbox's (a backup, the ``sqlite3`` shell, the
    host's own code) holds the database's write lock for ``seconds``."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.connection.driver_connection.isolation_level = None  # type: ignore[union-attr]
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")
            connection.exec_driver_sql("LOCK TABLE posweb_deliveries IN EXCLUSIVE MODE")
        release = threading.Timer(seconds, lambda: None)
        release.start()
        try:
            yield
        finally:
            release.join()
            connection.exec_driver_sql("ROLLBACK")
    engine.dispose()


def test_a_foreign_lock_is_bounded_by_the_timeout(database_url: str) -> None:
    """Operations: with a 1 s timeout and the lock held 5 s by another connection,
    0.2's deliveries got their 503 after 1.0, 4.0, 5.0 and 5.5 s."""
    store = Inbox.from_url(database_url, timeout=1)
    assert admit(store, b"before").new  # the tables and the receiver set exist
    waited: list[float] = []

    def write() -> None:
        started = time.monotonic()
        with pytest.raises(StoreError):
            admit(store, f"{threading.get_ident()}".encode())
        waited.append(time.monotonic() - started)

    with foreign_write_lock(database_url, 4):
        run_together(write, 4)
    assert len(waited) == 4 and all(0.9 < w < 2 for w in waited), waited
    assert admit(store, b"after").new
    assert [d.raw for d in store.deliveries()] == [b"after", b"before"]  # none of the others
    store.close()


def test_each_write_waits_by_its_own_deadline(database_url: str) -> None:
    """Pallets-grade details: a 1 s write queued behind a 3 s one waited 2.95 s, and
    the PostgreSQL writer ignored the deadline."""
    store = Inbox.from_url(database_url, timeout=5)
    assert admit(store, b"before").new
    outcomes: dict[str, tuple[str, float]] = {}

    def write(name: str, seconds: float) -> None:
        started = time.monotonic()
        try:
            admit(store, name.encode(), deadline=Deadline(seconds))
            outcome = "stored"
        except StoreError:
            outcome = "refused"
        outcomes[name] = (outcome, time.monotonic() - started)

    long = threading.Thread(target=write, args=("long", 4))
    with foreign_write_lock(database_url, 2):
        long.start()
        time.sleep(0.1)  # the long one leads, waiting for the lock
        write("short", 0.8)
    long.join()
    assert outcomes["short"][0] == "refused" and 0.7 < outcomes["short"][1] < 1.5, outcomes
    assert outcomes["long"][0] == "stored" and outcomes["long"][1] > 1.8, outcomes
    assert [d.raw for d in store.deliveries()] == [b"long", b"before"]
    store.close()


def test_a_deadline_is_shared_by_every_wait_of_one_request() -> None:
    deadline = Deadline(0.2)
    time.sleep(0.1)
    assert 0 < deadline.left() <= 0.1
    time.sleep(0.15)
    assert deadline.left() == 0


def test_the_disk_full_is_a_store_error(tmp_path: t.Any) -> None:
    store = Inbox.from_url(f"sqlite:///{tmp_path / 'inbox.sqlite3'}")
    store.counts()
    store.close()

    @sa.event.listens_for(store.database.engines.durable, "connect")
    def full(dbapi_connection: t.Any, _record: t.Any) -> None:
        # SQLite's own way to say "disk full": no page may be added.
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    with pytest.raises(StoreError, match="unavailable"):
        admit(store, b"x" * 100_000)
    store.close()


def test_a_server_down_is_a_store_error() -> None:
    down = Inbox.from_url("postgresql://nobody:x@127.0.0.1:9/none", timeout=1)
    with pytest.raises(StoreError, match="unavailable"):
        admit(down)


# -- group commit: threads share one transaction, a bad write fails alone ------------


def test_rows_stored_at_the_same_moment_share_one_commit(tmp_path: t.Any) -> None:
    store = Inbox.from_url(f"sqlite:///{tmp_path / 'inbox.sqlite3'}")
    store.counts()
    commits: list[int] = []
    sa.event.listen(store.database.engines.durable, "commit", lambda connection: commits.append(1))
    writer = store.database.writer
    assert isinstance(writer, GroupWriter)
    channel = writer._durable
    pool = concurrent.futures.ThreadPoolExecutor(8)
    with channel._leader:  # a commit in progress: newcomers queue behind it
        futures = [pool.submit(admit, store, f'{{"n": {n}}}'.encode()) for n in range(8)]
        deadline = time.monotonic() + 30
        while len(channel._queue) < 8:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert commits == []
    results = [f.result(timeout=30) for f in futures]
    pool.shutdown()
    assert all(a.new for a in results) and len({a.delivery.id for a in results}) == 8
    assert commits == [1]  # one of the eight committed them all
    store.close()


def test_one_bad_write_does_not_fail_its_neighbours(tmp_path: t.Any) -> None:
    """Inbox 0.2, finding 7: in 0.1 one bad row failed the whole group commit."""
    store = Inbox.from_url(f"sqlite:///{tmp_path / 'inbox.sqlite3'}")
    store.counts()
    channel = t.cast(GroupWriter, store.database.writer)._durable

    def poisoned(connection: sa.Connection) -> None:
        connection.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))

    pool = concurrent.futures.ThreadPoolExecutor(8)
    with channel._leader:
        futures = [pool.submit(admit, store, f"{n}".encode()) for n in range(7)]
        futures.append(pool.submit(store.database.write, poisoned))
        deadline = time.monotonic() + 30
        while len(channel._queue) < 8:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    errors = [f.exception(timeout=30) for f in futures]
    pool.shutdown()
    assert errors[:7] == [None] * 7 and isinstance(errors[7], StoreError)
    assert store.counts()["pending"] == 7
    store.close()


def test_outcomes_are_written_without_waiting_for_the_disk(inbox: Inbox) -> None:
    """Deliveries on the durable engine; receivers' outcomes on the relaxed one."""
    durable: list[str] = []
    relaxed: list[str] = []
    sa.event.listen(
        inbox.database.engines.durable, "before_cursor_execute", lambda *a: durable.append(a[2])
    )
    sa.event.listen(
        inbox.database.engines.relaxed, "before_cursor_execute", lambda *a: relaxed.append(a[2])
    )
    delivery = admit(inbox, owner="me", lease=60).delivery
    inbox.finish(delivery, "me", [outcome("a", True)], "processed")
    assert any("INSERT INTO posweb_deliveries" in s for s in durable)
    assert not any("INSERT" in s for s in relaxed)
    assert any(s.startswith("UPDATE posweb_deliveries") for s in relaxed)
    with inbox.database.engines.relaxed.connect() as connection:
        if inbox.database.engines.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        else:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    with inbox.database.engines.durable.connect() as connection:
        if inbox.database.engines.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        else:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_filters_combine_and_find_text_in_bodies(inbox: Inbox, clock: Clock) -> None:
    kopi = admit(inbox, b'{"Name": "Kopi Susu"}').delivery
    clock.advance(3600)
    admit(inbox, b'{"Name": "Teh Tarik"}')
    assert [d.id for d in inbox.deliveries(Filter(text="Kopi"))] == [kopi.id]
    assert inbox.counts(Filter(text="a"))["pending"] == 2
    later = Filter(text="Kopi", since=kopi.received_at + dt.timedelta(minutes=1))
    assert inbox.deliveries(later) == []
    assert [d.id for d in inbox.deliveries(Filter(event=["payment_created"]), limit=1)] != [kopi.id]
    assert [d.id for d in inbox.deliveries(before=kopi.id + 1)] == [kopi.id]


def test_an_unavailable_store_logs_the_drivers_reason(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stranger's review: a refused password and a stopped server looked alike."""
    inbox = Inbox.from_url(f"sqlite:///{tmp_path}")  # a folder, not a database file
    try:
        with pytest.raises(StoreError, match=r"unavailable \(OperationalError\)"):
            inbox.counts()
    finally:
        inbox.close()
    assert "The inbox is unavailable: OperationalError: unable to open database file" in (
        caplog.text
    )


def test_attempts_stored_before_the_replay_mark_read_it_from_their_generation() -> None:
    kept = outcome("ledger", False).stored()
    del kept["replay"]  # as 0.1 and early 0.2 stores kept them
    assert Attempt.from_stored(kept).replay is False
    assert Attempt.from_stored({**kept, "generation": 1}).replay is True  # only a replay makes one
    assert Attempt.from_stored({**kept, "replay": True}).replay is True
