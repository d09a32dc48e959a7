"""The inbox's tables: SQLAlchemy Core, one schema for SQLite and PostgreSQL.

The layout is versioned by Alembic (see :mod:`.migrations`); change it only
together with a new revision there.

.. versionadded:: 0.3
    (0.1 and 0.2 kept these in ``database.py``.)
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

__all__ = ["deliveries", "duplicates", "loyalty_answers", "metadata", "receiver_sets"]

metadata = sa.MetaData()

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's rowid alias


def _times(*names: str, nullable: tuple[str, ...] = ()) -> list[sa.Column[t.Any]]:
    return [sa.Column(name, sa.DateTime(), nullable=name in nullable) for name in names]


#: One row per delivery. Times are naive UTC.
deliveries = sa.Table(
    "posweb_deliveries",
    metadata,
    # AUTOINCREMENT on SQLite: an id is never given twice, even after the newest
    # rows were pruned (hosts are idempotent on ``event.id``).
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    # POSWEB_INBOX_NAME: apps that share a database on purpose keep apart.
    sa.Column("inbox", sa.String(64), nullable=False),
    # The merchant that sent it; "" for the app's own credentials (a key part
    # that NULL could not be: NULLs are never equal in a unique key).
    sa.Column("merchant", sa.String(64), nullable=False, server_default=""),
    sa.Column("event", sa.String(80), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("raw", sa.LargeBinary(), nullable=False),
    sa.Column("headers", sa.JSON(), nullable=False),
    # Why a delivery was rejected: {field path: [messages]}.
    sa.Column("errors", sa.JSON(), nullable=True),
    # Fields the docs mark required that the body lacked (accepted all the same).
    sa.Column("missing", sa.JSON(), nullable=True),
    # Key of the receivers the receiving app had for the event (posweb_receiver_sets):
    # only a dispatcher that has all of them may take the delivery.
    sa.Column("receiver_set", sa.String(64), nullable=True),
    # Every receiver call, oldest first (see records.Attempt).
    sa.Column("outcomes", sa.JSON(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    # Bumped by a replay of a finished delivery: receivers' earlier successes
    # belong to the previous generation and no longer count.
    sa.Column("generation", sa.Integer(), nullable=False),
    sa.Column("replay", sa.Boolean(), nullable=False),
    *_times("received_at", "updated_at", "next_attempt_at", nullable=("next_attempt_at",)),
    sa.Column("locked_by", sa.String(64), nullable=True),
    sa.Column("locked_until", sa.DateTime(), nullable=True),
    # When a task engine (Celery) was last asked to dispatch it.
    sa.Column("enqueued_at", sa.DateTime(), nullable=True),
    sa.Index("ix_posweb_deliveries_due", "inbox", "status", "next_attempt_at"),
    sa.Index("ix_posweb_deliveries_finished", "status", "updated_at"),
    sa.Index("ix_posweb_deliveries_received", "received_at"),
    # The log page: one status, or one event, newest first; an event's counts
    # per status (see migration 0003).
    sa.Index("ix_posweb_deliveries_status_id", "inbox", "status", "id"),
    sa.Index("ix_posweb_deliveries_event_id", "inbox", "event", "id"),
    sa.Index("ix_posweb_deliveries_event_status", "inbox", "event", "status"),
    # One merchant's deliveries, newest first (the log page, list --merchant).
    sa.Index("ix_posweb_deliveries_merchant_id", "inbox", "merchant", "id"),
    sqlite_autoincrement=True,
)

#: The latest accepted delivery of each duplicate scope (see ``duplicates.py``).
duplicates = sa.Table(
    "posweb_duplicates",
    metadata,
    # A hash of (inbox, event, resource or body): fixed length, whatever the body.
    sa.Column("scope", sa.String(64), primary_key=True),
    sa.Column(
        "delivery_id",
        _Id,
        sa.ForeignKey("posweb_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("seen_at", sa.DateTime(), nullable=False),
    sa.Index("ix_posweb_duplicates_delivery", "delivery_id"),
    sa.Index("ix_posweb_duplicates_seen", "seen_at"),
)

#: Every set of receivers an app has had for an event: a delivery names the one
#: it expects, and a dispatcher takes only deliveries whose set it has.
receiver_sets = sa.Table(
    "posweb_receiver_sets",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("event", sa.String(80), nullable=False),
    sa.Column("receivers", sa.JSON(), nullable=False),
    sa.Column("first_seen", sa.DateTime(), nullable=False),
)

#: Loyalty answers remembered so that an order is rewarded once (not deliveries:
#: never listed, replayed or pruned with them).
loyalty_answers = sa.Table(
    "posweb_loyalty_answers",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("inbox", sa.String(64), nullable=False),
    # Whose order it is ("": the app's own): one merchant's order ID is not another's.
    sa.Column("merchant", sa.String(64), nullable=False, server_default=""),
    sa.Column("call", sa.String(40), nullable=False),
    # "id:<order ID>" (at most 200 characters, checked first) or "sha256:<body hash>".
    sa.Column("key", sa.String(240), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("raw", sa.LargeBinary(), nullable=False),
    sa.Column("headers", sa.JSON(), nullable=False),
    sa.Column("answer", sa.JSON(), nullable=True),
    sa.Column("errors", sa.JSON(), nullable=True),
    *_times("created_at", "updated_at"),
    sa.Column("locked_by", sa.String(64), nullable=True),
    sa.Column("locked_until", sa.DateTime(), nullable=True),
    sa.UniqueConstraint("inbox", "merchant", "call", "key", name="uq_posweb_loyalty_answers_key"),
    sa.Index("ix_posweb_loyalty_answers_updated", "updated_at"),
    sqlite_autoincrement=True,
)
