"""Indexes that earn their cost: a status in an index key costs each delivery a
second page (its outcome moves it), so those indexes hold only the few rows
they are for; and the queries of the log page and of dispatch are served by
them, once the planner has statistics (which housekeeping keeps)."""

from __future__ import annotations

import datetime as dt
import pathlib
import typing as t

import pytest
import sqlalchemy as sa

from benchmarks.log_page import fill
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import Retention
from flask_posweb.inbox.tables import deliveries
from flask_posweb.inbox.tables import duplicates

from .conftest import LEDGER
from .conftest import Clock

#: Nothing in these tests is old enough for it.
RETENTION = Retention(10**9, 10**9, 10**9, 10**6)


def test_an_index_keyed_by_status_holds_only_the_rows_it_is_for() -> None:
    keyed = [index for index in deliveries.indexes if "status" in index.columns]
    assert {index.name for index in keyed} == {
        "ix_posweb_deliveries_finished",
        "ix_posweb_deliveries_unusual",
    }
    for index in [*keyed, *(i for i in deliveries.indexes if i.name.endswith("_waiting"))]:
        where = index.dialect_options["sqlite"]["where"]
        assert where is not None and where is index.dialect_options["postgresql"]["where"]
    assert not any("seen_at" in index.columns for index in duplicates.indexes)


def plans(inbox: Inbox, read: t.Callable[[], object]) -> list[str]:
    """SQLite's plan of every statement ``read`` runs."""
    engine, statements = inbox.database.engines.read, []

    def seen(*args: t.Any) -> None:
        if not args[2].startswith("EXPLAIN"):
            statements.append((args[2], args[3]))

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        read()
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    with engine.connect() as connection:
        return [
            "; ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p))
            for s, p in statements
            if s.startswith("SELECT") and "alembic" not in s
        ]


@pytest.fixture
def stored(tmp_path: pathlib.Path) -> t.Iterator[Inbox]:
    """An SQLite inbox of 20,000 deliveries: a month of a shop, mostly processed."""
    path = str(tmp_path / "inbox.sqlite3")
    fill(path, 20_000, now=dt.datetime(2026, 12, 1), analyze=False)
    inbox = Inbox.from_url(f"sqlite:///{path}")
    yield inbox
    inbox.close()


def test_the_first_page_is_the_table_in_its_own_order(stored: Inbox) -> None:
    """No index starts with the inbox (one value for every row): even without
    statistics SQLite reads the newest rows first, and sorts nothing."""
    assert plans(stored, stored.deliveries) == ["SCAN posweb_deliveries"]
    stored.housekeep(RETENTION)
    assert plans(stored, stored.deliveries) == ["SCAN posweb_deliveries"]


def test_housekeeping_gives_the_planner_its_statistics(stored: Inbox) -> None:
    """Without them, one event's counts read each of its rows for its status."""
    one_event = lambda: stored.counts(Filter(event=["payment_created"]))  # noqa: E731
    assert "COVERING INDEX ix_posweb_deliveries_unusual" not in plans(stored, one_event)[0]
    stored.housekeep(RETENTION)
    with stored.database.engines.read.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM sqlite_stat1").scalar()
    assert "COVERING INDEX ix_posweb_deliveries_unusual" in plans(stored, one_event)[0]


def test_the_log_page_and_dispatch_read_their_indexes(stored: Inbox) -> None:
    stored.housekeep(RETENTION)
    counts = plans(stored, stored.counts)[0]
    # All but the processed from their index, the total from another: no row read.
    assert "COVERING INDEX ix_posweb_deliveries_unusual" in counts
    assert "COVERING INDEX ix_posweb_deliveries_merchant_id" in counts
    one_event = plans(stored, lambda: stored.counts(Filter(event=["shift_closed"])))[0]
    assert "COVERING INDEX ix_posweb_deliveries_event_merchant" in one_event
    failed = plans(stored, lambda: stored.deliveries(Filter(status=["failed", "dead"])))
    assert "INDEX ix_posweb_deliveries_unusual" in failed[0]
    events = plans(stored, lambda: stored.deliveries(Filter(event=["shift_closed"])))
    assert events == [
        "SEARCH posweb_deliveries USING INDEX ix_posweb_deliveries_event_id (event=?)"
    ]
    due = plans(stored, lambda: stored.due_merchants([LEDGER.key]))[0]
    assert "INDEX ix_posweb_deliveries_waiting" in due
    waiting = plans(stored, lambda: stored.waiting_for([LEDGER.key]))[0]
    assert "INDEX ix_posweb_deliveries_waiting" in waiting


def test_counts_from_indexes_are_the_counts_of_the_rows(stored: Inbox) -> None:
    stored.housekeep(RETENTION)
    with stored.database.engines.read.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT status, count(*) FROM posweb_deliveries GROUP BY status"
        ).all()
        one_event = connection.exec_driver_sql(
            "SELECT status, count(*) FROM posweb_deliveries "
            "WHERE event = 'shift_closed' GROUP BY status"
        ).all()
    zero = dict.fromkeys(stored.counts(), 0)
    assert stored.counts() == {**zero, **dict(rows)}
    assert stored.counts(Filter(event=["shift_closed"])) == {**zero, **dict(one_event)}
    dead = stored.counts(Filter(status=["dead"]))
    assert dead["dead"] == dict(rows)["dead"] and dead["processed"] == 0
    (own,) = stored.merchants()
    assert own.merchant is None and own.counts == {**zero, **dict(rows)}


# -- duplicate scopes: aged by their ids, no index of times -------------------------


def test_scopes_past_the_window_go_oldest_first_the_others_stay(inbox: Inbox, clock: Clock) -> None:
    old = [inbox.admit("payment_created", f"{n}".encode(), {}, receivers=LEDGER) for n in range(5)]
    clock.advance(inbox.duplicate_window + 1)
    new = [inbox.admit("payment_created", f"n{n}".encode(), {}, receivers=LEDGER) for n in range(3)]
    assert inbox.housekeep(RETENTION, batch=2)["duplicates"] == 5
    # The new ones are still duplicates of themselves; the old ones no longer.
    assert all(
        not inbox.admit("payment_created", f"n{n}".encode(), {}, receivers=LEDGER).new
        for n in range(3)
    )
    assert inbox.admit("payment_created", b"0", {}, receivers=LEDGER).new
    assert len(old) == 5 and len(new) == 3


def test_housekeeping_with_nothing_to_delete_takes_no_turn_at_the_lock(inbox: Inbox) -> None:
    inbox.admit("payment_created", b"{}", {}, receivers=LEDGER)
    inbox.housekeep(RETENTION)  # the first pass also refreshes the statistics
    writes: list[str] = []
    for engine in {inbox.database.engines.durable, inbox.database.engines.relaxed}:
        sa.event.listen(engine, "before_cursor_execute", lambda *a: writes.append(a[2]))
    assert not any(inbox.housekeep(RETENTION).values())
    assert writes == [], writes
