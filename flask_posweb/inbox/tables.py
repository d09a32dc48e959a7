"""The inbox's tables: SQLAlchemy Core, one schema for SQLite and PostgreSQL.

The layout is versioned by Alembic (see :mod:`.migrations`); change it only
together with a new revision there.

.. versionadded:: 0.3
    (0.1 and 0.2 kept these in ``database.py``.)
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable

import sqlalchemy as sa

from . import states

__all__ = [
    "FINISHED",
    "UNUSUAL",
    "WAITING",
    "deliveries",
    "duplicates",
    "loyalty_answers",
    "metadata",
    "receiver_sets",
    "status_in",
]

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
    # Every index is paid for by every delivery, in disk pages written under
    # the lock: those whose key has the status (which each outcome changes)
    # hold only the few rows they are for, and none starts with the inbox,
    # which is one value for every row of most databases: a planner without
    # statistics would take any index that starts with it (see migration 0005).
    sa.Index("ix_posweb_deliveries_received", "received_at"),
    # One event's deliveries newest first (the log page), and one merchant's
    # (the log page, list --merchant; and the totals per merchant, from the
    # index alone): keys that never change.
    sa.Index("ix_posweb_deliveries_event_id", "event", "id"),
    sa.Index("ix_posweb_deliveries_merchant_id", "merchant", "id", "inbox"),
    # Counts per merchant, of one event or all, read from the index alone.
    sa.Index("ix_posweb_deliveries_event_merchant", "event", "merchant", "inbox"),
    sqlite_autoincrement=True,
)

D = deliveries.c


def status_in(statuses: Iterable[str]) -> sa.ColumnElement[bool]:
    """``status IN (...)``, the statuses written into the SQL as constants.

    A partial index serves a query only if the query says the index's
    ``WHERE`` too: SQLite compares the terms as written (constants, not bound
    values); PostgreSQL proves it, which a generic plan's parameters defeat.
    So the indexes below and the statements that need them share these terms.
    """
    return D.status.in_([sa.literal_column(f"'{status}'", D.status.type) for status in statuses])


#: What a dispatcher may take, due now or later: a backlog, not the history.
WAITING = status_in(states.DISPATCHABLE)
#: What retention may delete.
FINISHED = status_in(states.TERMINAL)
#: All but the processed, which most deliveries end as: what an operator looks for.
UNUSUAL = D.status != sa.literal_column("'processed'", D.status.type)

# Dispatch: each merchant's waiting deliveries by when they are due.
sa.Index(
    "ix_posweb_deliveries_waiting",
    D.merchant,
    D.next_attempt_at,
    sqlite_where=WAITING,
    postgresql_where=WAITING,
)
# Retention: finished deliveries by age.
sa.Index(
    "ix_posweb_deliveries_finished",
    D.status,
    D.updated_at,
    sqlite_where=FINISHED,
    postgresql_where=FINISHED,
)
# The log page: one status (the processed: the table's own order), and the
# counts of all but the processed per event and merchant, read from the index
# alone (the processed are the rest).
sa.Index(
    "ix_posweb_deliveries_unusual",
    D.status,
    D.event,
    D.merchant,
    D.inbox,
    sqlite_where=UNUSUAL,
    postgresql_where=UNUSUAL,
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
    # ON DELETE CASCADE, and retention: scopes age in the order of their ids
    # (see Inbox.housekeep), so no index of their times is kept.
    sa.Index("ix_posweb_duplicates_delivery", "delivery_id"),
    # SQLite: the rows in their key's b-tree, not beside it in a second one
    # (one page less per delivery).
    sqlite_with_rowid=False,
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
    # When a dispatcher that has every one of these receivers was last alive
    # (see liveness.py): deliveries no live dispatcher can take are stranded.
    sa.Column("last_seen", sa.DateTime(), nullable=True),
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
