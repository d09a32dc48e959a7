"""The inbox's layout is versioned (Alembic): new stores are created at the
latest revision, a store behind the code answers 503 until ``flask posweb db
upgrade``, and 0.1's layout upgrades with its data kept; on each database."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import typing as t

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb.inbox import Inbox
from flask_posweb.inbox.migrations import VERSION_TABLE
from flask_posweb.inbox.migrations import _config
from flask_posweb.inbox.migrations import head
from flask_posweb.inbox.tables import metadata
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .conftest import MakeApp
from .conftest import reset_postgresql

T0 = dt.datetime(2026, 11, 20, 8, 0, 0)


def engine_of(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def create_0_1_store(url: str) -> None:
    """A store as Flask-PosWeb 0.1 left it: its one table, no version, some rows."""
    from alembic import command

    engine = engine_of(url)
    with engine.begin() as connection:
        command.upgrade(_config(connection), "0001")  # 0.1's layout, as frozen in 0001
        connection.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))  # 0.1 kept no version
        old = sa.Table("posweb_deliveries", sa.MetaData(), autoload_with=connection)
        outcome = {
            "receiver": "shop.record", "attempt": 1, "generation": 0, "ok": True,
            "error": None, "started_at": T0.isoformat(), "duration_ms": 1.5,
        }  # fmt: skip
        rows = [
            ("payment_created", "processed", sample("payment_created"), [outcome], None),
            ("invoice_created", "failed", sample("invoice_created"), [], None),
            ("payment_created", "rejected", b'{"ID": "x"}', [], None),
            (
                "loyalty_order_complete",
                "processed",
                b'{"ID": "ord-9", "Sales": 68000}',
                [],
                {"reward": 68},
            ),
        ]
        for n, (event, status, raw, outcomes, answer) in enumerate(rows, start=1):
            connection.execute(
                old.insert().values(
                    id=n * 10,
                    event=event,
                    dedup_key=f"{event}:{n}",
                    status=status,
                    raw=raw,
                    headers={"User-Agent": "DealPOS"},
                    errors={"InvoiceID": ["Missing"]} if status == "rejected" else None,
                    answer=answer,
                    outcomes=outcomes,
                    attempts=1,
                    generation=0,
                    replay=False,
                    received_at=T0,
                    updated_at=T0,
                    next_attempt_at=T0 if status == "failed" else None,
                )
            )
    engine.dispose()


def test_a_new_store_is_created_at_the_latest_revision(database_url: str) -> None:
    inbox = Inbox.from_url(database_url)
    try:
        assert inbox.database.revision() is None
        assert inbox.counts()["pending"] == 0  # first use
        assert inbox.database.revision() == head()
    finally:
        inbox.close()


def test_the_tables_are_what_the_migrations_make(database_url: str) -> None:
    """The models and the migrations agree: an upgraded 0.1 store has exactly
    the layout a new one gets (Alembic's autogenerate finds nothing to do)."""
    create_0_1_store(database_url)
    inbox = Inbox.from_url(database_url)
    try:
        assert inbox.database.upgrade() == ("0001", head())
        with inbox.database.engines.read.connect() as connection:

            def ours(name: str | None, kind: str, parents: t.Any) -> bool:
                return kind != "table" or (
                    str(name).startswith("posweb_") and name != VERSION_TABLE
                )

            context = MigrationContext.configure(connection, opts={"include_name": ours})
            assert compare_metadata(context, metadata) == []
    finally:
        inbox.close()


def layout(inbox: Inbox) -> dict[str, str]:
    """Every index of our tables as the database has it, predicates included
    (which Alembic's comparison does not look at), and SQLite's tables' own SQL."""
    with inbox.database.engines.read.connect() as connection:
        if inbox.database.dialect == "sqlite":
            query = (
                "SELECT name, sql FROM sqlite_master WHERE tbl_name LIKE 'posweb_%%' "
                "AND tbl_name <> 'posweb_alembic_version' AND sql IS NOT NULL"
            )
        else:
            query = (
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename LIKE 'posweb_%%' "
                "AND tablename <> 'posweb_alembic_version'"
            )
        rows = connection.exec_driver_sql(query).all()
    # The same definition, however it was written (Alembic quotes, create_all does not).
    return {name: " ".join(sql.replace('"', "").split()) for name, sql in rows}


def test_indexes_and_tables_are_what_the_migrations_make(database_url: str) -> None:
    create_0_1_store(database_url)
    upgraded = Inbox.from_url(database_url)
    try:
        upgraded.database.upgrade()
        migrated = layout(upgraded)
    finally:
        upgraded.close()
    if database_url.startswith("sqlite"):
        os.remove(database_url.removeprefix("sqlite:///"))
    else:
        reset_postgresql(database_url)
    fresh = Inbox.from_url(database_url)
    try:
        fresh.counts()  # created at the head
        created = layout(fresh)
    finally:
        fresh.close()
    indexes = {name for name in created if name.startswith("ix_")}
    assert "ix_posweb_deliveries_waiting" in indexes
    assert {k: v for k, v in migrated.items() if k in indexes} == {
        k: v for k, v in created.items() if k in indexes
    }
    assert {name for name in migrated if name.startswith("ix_")} == indexes
    if fresh.database.dialect == "sqlite":
        assert migrated["posweb_duplicates"].endswith("WITHOUT ROWID")
        assert created["posweb_duplicates"].endswith("WITHOUT ROWID")


def test_the_0_1_layout_upgrades_with_its_data(
    make_app: MakeApp, database_url: str, posweb: PosWeb, caplog: pytest.LogCaptureFixture
) -> None:
    create_0_1_store(database_url)
    app = make_app(POSWEB_DATABASE_URL=database_url, POSWEB_RETRY_AFTER=9)
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    # Behind the code: never migrated under traffic; DealPOS is told to retry.
    with caplog.at_level(logging.ERROR, "flask_posweb"):
        refused = client.deliver("payment_updated")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "9"
    assert "run 'flask posweb db upgrade'" in refused.json["message"]  # type: ignore[index]
    assert "flask posweb db upgrade" in caplog.text
    # The db commands work on it.
    runner = app.test_cli_runner()
    current = runner.invoke(args=["posweb", "db", "current"])
    needs = f"revision 0001; this code needs {head()}: run 'flask posweb db upgrade'"
    assert needs in current.stdout
    upgrade = runner.invoke(args=["posweb", "db", "upgrade"])
    assert upgrade.exit_code == 0, upgrade.output
    assert upgrade.stdout.strip() == f"Upgraded the inbox from revision 0001 to {head()}."
    assert runner.invoke(args=["posweb", "db", "upgrade"]).stdout.strip() == (
        f"The inbox is at revision {head()} already."
    )

    inbox = get_state(app).require_inbox()
    rows = {d.id: d for d in inbox.deliveries()}
    assert sorted(rows) == [10, 20, 30]  # the loyalty answer moved out of the deliveries
    processed = rows[10]
    assert (processed.status, processed.inbox, processed.receiver_set) == (
        "processed",
        "default",
        None,
    )
    assert processed.outcomes[0]["receiver"] == "shop.record" and processed.received_at == T0
    assert rows[20].status == "failed" and rows[30].errors == {"InvoiceID": ["Missing"]}
    assert inbox.counts()["failed"] == 1
    remembered = get_state(app).require_inbox().answers.get(None, "order_complete", "id:ord-9")  # type: ignore[union-attr]
    assert remembered is not None and remembered.answer == {"reward": 68}
    assert remembered.status == "answered"

    # The store serves again: new ids follow the old ones, kept failures retry.
    again = client.deliver("payment_updated")
    assert again.status_code == 200 and int(again.headers["X-PosWeb-Delivery"]) > 30


def test_downgrade_and_upgrade_again_keep_the_data(database_url: str) -> None:
    create_0_1_store(database_url)
    inbox = Inbox.from_url(database_url)
    try:
        inbox.database.upgrade()
        assert inbox.database.downgrade("0001") == (head(), "0001")
        engine = engine_of(database_url)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT event, dedup_key, answer FROM posweb_deliveries ORDER BY id")
            ).all()
        engine.dispose()
        assert [row.event for row in rows] == [
            "payment_created", "invoice_created", "payment_created", "loyalty_order_complete"
        ]  # fmt: skip
        answer = rows[3].answer if isinstance(rows[3].answer, dict) else json.loads(rows[3].answer)
        assert answer == {"reward": 68}
        assert inbox.database.upgrade() == ("0001", head())
        assert len(inbox.deliveries()) == 3
    finally:
        inbox.close()


def test_a_store_ahead_of_the_code_is_refused_too(database_url: str, make_app: MakeApp) -> None:
    inbox = Inbox.from_url(database_url)
    inbox.counts()
    with inbox.database.engines.durable.begin() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    inbox.close()
    app = make_app(POSWEB_DATABASE_URL=database_url)
    response = app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert response.status_code == 503


def test_our_version_table_is_our_own(database_url: str) -> None:
    inbox = Inbox.from_url(database_url)
    inbox.counts()
    with inbox.database.engines.read.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    inbox.close()
    assert VERSION_TABLE in tables and "alembic_version" not in tables


def test_an_app_starts_while_its_database_is_down(tmp_path: t.Any) -> None:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        POSWEB_API_KEYS=["k" * 16],
        POSWEB_DATABASE_URL="postgresql://nobody:x@127.0.0.1:9/none",
        POSWEB_DATABASE_TIMEOUT=1,
    )
    app.register_blueprint(PosWeb().blueprint)
    response = PosWebClient(app).deliver("payment_created")
    assert response.status_code == 503


def test_a_0_2_store_upgrades_in_place_its_rows_the_apps_own(
    make_app: MakeApp, database_url: str, posweb: PosWeb
) -> None:
    """Many merchants (0.3): a 0.2 store gains the merchant columns, and every row
    it kept is the app's own (``merchant`` is ``None``); a duplicate window open
    across the upgrade still holds."""
    import hashlib

    from alembic import command

    raw = sample("payment_created")
    resource = json.loads(raw)["ID"]
    scope = hashlib.sha256(f"default\0payment_created\0resource\0{resource}".encode())
    engine = engine_of(database_url)
    with engine.begin() as connection:
        command.upgrade(_config(connection), "0003")  # 0.2's layout, and rows as 0.2 wrote them
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        delivery = connection.execute(
            sa.text(
                "INSERT INTO posweb_deliveries (inbox, event, status, raw, headers, outcomes,"
                " attempts, generation, replay, received_at, updated_at)"
                " VALUES ('default', 'payment_created', 'processed', :raw, '{}', '[]', 1, 0,"
                " false, :now, :now) RETURNING id"
            ),
            {"raw": raw, "now": now},
        ).scalar_one()
        connection.execute(
            sa.text(
                "INSERT INTO posweb_duplicates (scope, delivery_id, body_hash, seen_at)"
                " VALUES (:scope, :id, :hash, :now)"
            ),
            {
                "scope": scope.hexdigest(),
                "id": delivery,
                "hash": hashlib.sha256(raw).hexdigest(),
                "now": now,
            },
        )
        connection.execute(
            sa.text(
                "INSERT INTO posweb_loyalty_answers (inbox, call, key, status, raw, headers,"
                " answer, created_at, updated_at) VALUES ('default', 'order_complete',"
                " 'id:ord-9', 'answered', :raw, '{}', :answer, :now, :now)"
            ),
            {"raw": b"{}", "answer": json.dumps({"reward": 68}), "now": now},
        )
    engine.dispose()
    posweb.on("payment_created")(lambda sender, event, **extra: None)
    app = make_app(POSWEB_DATABASE_URL=database_url)
    runner = app.test_cli_runner()
    assert (
        "revision 0003; this code needs" in runner.invoke(args=["posweb", "db", "current"]).stdout
    )
    assert runner.invoke(args=["posweb", "db", "upgrade"]).exit_code == 0
    inbox = get_state(app).require_inbox()
    (row,) = inbox.deliveries()
    assert row.id == delivery and row.merchant is None and row.status == "processed"
    remembered = inbox.answers.get(None, "order_complete", "id:ord-9")
    assert remembered is not None and remembered.merchant is None
    assert remembered.answer == {"reward": 68}
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    again = client.deliver("payment_created", raw)
    assert again.status_code == 200 and again.headers["X-PosWeb-Delivery"] == str(delivery)
    assert len(inbox.deliveries()) == 1  # a repeat of 0.2's delivery, not a new one
