"""Inbox 0.2: inbox names, a duplicate window, receiver sets, loyalty answers apart.

- ``posweb_deliveries`` gains ``inbox``, ``missing``, ``receiver_set`` and
  ``enqueued_at`` and loses ``dedup_key`` (duplicates are a window now, kept in
  ``posweb_duplicates``) and ``answer``; on SQLite it is copied into a table
  with AUTOINCREMENT, so that ids are never given twice.
- Remembered loyalty answers move to ``posweb_loyalty_answers``.
- Rows kept from 0.1 belong to the inbox ``default`` and expect no particular
  receivers (any dispatcher of that inbox may take them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LOYALTY_STATUS = {"processed": "answered", "failed": "failed", "pending": "failed"}


def _delivery_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("inbox", sa.String(64), nullable=False),
        sa.Column("event", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("missing", sa.JSON(), nullable=True),
        sa.Column("receiver_set", sa.String(64), nullable=True),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("replay", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("locked_by", sa.String(64), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(), nullable=True),
    ]


#: The columns both layouts share, copied as they are.
SHARED = [
    "id", "event", "status", "raw", "headers", "errors", "outcomes", "attempts", "generation",
    "replay", "received_at", "updated_at", "next_attempt_at", "locked_by", "locked_until",
]  # fmt: skip

OLD = sa.table(
    "posweb_deliveries",
    *(sa.column(name) for name in SHARED if name not in ("raw", "headers", "errors", "outcomes")),
    sa.column("raw", sa.LargeBinary()),
    sa.column("headers", sa.JSON()),
    sa.column("errors", sa.JSON()),
    sa.column("outcomes", sa.JSON()),
    sa.column("answer", sa.JSON()),
    sa.column("dedup_key", sa.String()),
)
LOYALTY = sa.table(
    "posweb_loyalty_answers",
    *(sa.column(name) for name in ("inbox", "call", "key", "status", "created_at", "updated_at")),
    sa.column("raw", sa.LargeBinary()),
    sa.column("headers", sa.JSON()),
    sa.column("answer", sa.JSON()),
    sa.column("errors", sa.JSON()),
)


def _indexes() -> None:
    op.create_index(
        "ix_posweb_deliveries_due", "posweb_deliveries", ["inbox", "status", "next_attempt_at"]
    )
    op.create_index("ix_posweb_deliveries_finished", "posweb_deliveries", ["status", "updated_at"])


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "posweb_receiver_sets",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("event", sa.String(80), nullable=False),
        sa.Column("receivers", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "posweb_loyalty_answers",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("inbox", sa.String(64), nullable=False),
        sa.Column("call", sa.String(40), nullable=False),
        sa.Column("key", sa.String(240), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("locked_by", sa.String(64), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("inbox", "call", "key", name="uq_posweb_loyalty_answers_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_posweb_loyalty_answers_updated", "posweb_loyalty_answers", ["updated_at"])
    _move_loyalty_answers(bind)

    if bind.dialect.name == "sqlite":
        op.create_table("posweb_deliveries_v2", *_delivery_columns(), sqlite_autoincrement=True)
        columns = ", ".join(SHARED)
        op.execute(
            f"INSERT INTO posweb_deliveries_v2 (inbox, {columns}) "
            f"SELECT 'default', {columns} FROM posweb_deliveries"
        )
        op.drop_table("posweb_deliveries")
        op.rename_table("posweb_deliveries_v2", "posweb_deliveries")
    else:
        op.add_column(
            "posweb_deliveries",
            sa.Column("inbox", sa.String(64), nullable=False, server_default="default"),
        )
        op.alter_column("posweb_deliveries", "inbox", server_default=None)
        op.add_column("posweb_deliveries", sa.Column("missing", sa.JSON(), nullable=True))
        op.add_column("posweb_deliveries", sa.Column("receiver_set", sa.String(64), nullable=True))
        op.add_column("posweb_deliveries", sa.Column("enqueued_at", sa.DateTime(), nullable=True))
        op.drop_column("posweb_deliveries", "dedup_key")
        op.drop_column("posweb_deliveries", "answer")
        op.drop_index("ix_posweb_deliveries_due", "posweb_deliveries")
        # Ids never go back: the sequence stays past every id ever given.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('posweb_deliveries', 'id'), GREATEST("
            "(SELECT COALESCE(MAX(id), 1) FROM posweb_deliveries), "
            "(SELECT last_value FROM posweb_deliveries_id_seq)))"
        )
    _indexes()
    if bind.dialect.name == "sqlite":
        op.create_index("ix_posweb_deliveries_received", "posweb_deliveries", ["received_at"])

    op.create_table(
        "posweb_duplicates",
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column(
            "delivery_id",
            _Id,
            sa.ForeignKey("posweb_deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_posweb_duplicates_delivery", "posweb_duplicates", ["delivery_id"])
    op.create_index("ix_posweb_duplicates_seen", "posweb_duplicates", ["seen_at"])


def _move_loyalty_answers(bind: sa.Connection) -> None:
    """0.1 kept remembered answers as deliveries named ``loyalty_<call>``."""
    loyalty = OLD.c.event.like("loyalty\\_%", escape="\\")
    for row in bind.execute(sa.select(OLD).where(loyalty)):
        call = row.event.removeprefix("loyalty_")
        try:
            order_id = json.loads(row.raw).get("ID")
        except (ValueError, AttributeError):
            order_id = None
        key = f"id:{order_id}" if order_id else f"sha256:{hashlib.sha256(row.raw).hexdigest()}"
        bind.execute(
            LOYALTY.insert().values(
                inbox="default",
                call=call,
                key=key[:240],
                status=LOYALTY_STATUS.get(row.status, "failed"),
                raw=row.raw,
                headers=row.headers,
                answer=row.answer,
                errors=row.errors,
                created_at=row.received_at,
                updated_at=row.updated_at,
            )
        )
    bind.execute(OLD.delete().where(loyalty))


def downgrade() -> None:
    """Back to 0.1, keeping every delivery and remembered answer.

    0.1 allowed one delivery per body: a body received again after the window
    keeps a numbered duplicate key (``...#<id>``) so that none is lost. The
    ``dedup_key`` column comes back nullable (it is filled after the copy).
    """
    bind = op.get_bind()
    op.drop_table("posweb_duplicates")
    if bind.dialect.name == "sqlite":
        op.create_table(
            "posweb_deliveries_v1",
            sa.Column("id", _Id, primary_key=True, autoincrement=True),
            sa.Column("event", sa.String(80), nullable=False),
            sa.Column("dedup_key", sa.String(160), nullable=True, unique=True),
            *(c for c in _delivery_columns() if c.name in SHARED and c.name not in ("id", "event")),
            sa.Column("answer", sa.JSON(), nullable=True),
        )
        columns = ", ".join(SHARED)
        op.execute(
            f"INSERT INTO posweb_deliveries_v1 ({columns}) SELECT {columns} FROM posweb_deliveries"
        )
        op.drop_table("posweb_deliveries")
        op.rename_table("posweb_deliveries_v1", "posweb_deliveries")
        op.create_index(
            "ix_posweb_deliveries_due", "posweb_deliveries", ["status", "next_attempt_at"]
        )
        op.create_index("ix_posweb_deliveries_received", "posweb_deliveries", ["received_at"])
    else:
        op.drop_index("ix_posweb_deliveries_due", "posweb_deliveries")
        op.drop_index("ix_posweb_deliveries_finished", "posweb_deliveries")
        for name in ("inbox", "missing", "receiver_set", "enqueued_at"):
            op.drop_column("posweb_deliveries", name)
        op.add_column("posweb_deliveries", sa.Column("dedup_key", sa.String(160), nullable=True))
        op.add_column("posweb_deliveries", sa.Column("answer", sa.JSON(), nullable=True))
        op.create_unique_constraint(
            "posweb_deliveries_dedup_key_key", "posweb_deliveries", ["dedup_key"]
        )
        op.create_index(
            "ix_posweb_deliveries_due", "posweb_deliveries", ["status", "next_attempt_at"]
        )
    seen: collections.Counter[str] = collections.Counter()
    for row in bind.execute(sa.select(OLD.c.id, OLD.c.event, OLD.c.raw).order_by(OLD.c.id)):
        key = f"{row.event}:{hashlib.sha256(row.raw).hexdigest()}"
        seen[key] += 1
        unique = key if seen[key] == 1 else f"{key}#{row.id}"
        bind.execute(OLD.update().where(OLD.c.id == row.id).values(dedup_key=unique))
    _loyalty_back(bind)
    op.drop_table("posweb_loyalty_answers")
    op.drop_table("posweb_receiver_sets")


def _loyalty_back(bind: sa.Connection) -> None:
    back = {"answered": "processed", "failed": "failed", "answering": "pending"}
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    for row in bind.execute(sa.select(LOYALTY)):
        event = f"loyalty_{row.call}"
        key = row.key.removeprefix("id:").removeprefix("sha256:")
        bind.execute(
            OLD.insert().values(
                event=event,
                dedup_key=f"{event}:{key}"[:160],
                status=back.get(row.status, "failed"),
                raw=row.raw,
                headers=row.headers,
                errors=row.errors,
                answer=row.answer,
                outcomes=[],
                attempts=0,
                generation=0,
                replay=False,
                received_at=row.created_at or now,
                updated_at=row.updated_at or now,
                next_attempt_at=None,
            )
        )
