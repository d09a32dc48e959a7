"""Inbox 0.3: indexes that earn their cost.

Every index costs every delivery a page or two written under the lock, and
an index whose key holds the status costs it twice: once for the new row,
once more for its outcome, in another part of the index. And an index that
starts with the inbox (one value for every row of most databases) is what
SQLite's planner takes, without statistics, for any query on an inbox: the
log page's first page then sorted every delivery. So:

- dispatch's ``(inbox, status, next_attempt_at)`` becomes
  ``ix_posweb_deliveries_waiting``: ``(merchant, next_attempt_at)`` of the
  pending and failed only, a backlog rather than the whole history;
- retention's ``(status, updated_at)`` holds the finished only;
- the log page's ``(inbox, status, id)`` becomes
  ``ix_posweb_deliveries_unusual``: ``(status, event, merchant, inbox)`` of all
  but the processed deliveries (those are the table's own order, and the
  rest of any count), which counts the others without reading a row;
- its ``(inbox, event, status)`` becomes ``(event, merchant, inbox)``, whose
  key never changes: counts per merchant, of one event or all, from the index;
- ``(inbox, event, id)`` becomes ``(event, id)``, and ``(inbox, merchant, id)``
  ``(merchant, id, inbox)``, which counts each merchant's deliveries without
  reading a row;
- ``posweb_duplicates`` loses its index of times: scopes age in the order of
  their deliveries' ids, which the index for ``ON DELETE CASCADE`` keeps;
- SQLite: ``posweb_duplicates`` is kept ``WITHOUT ROWID``, its rows in its
  key's b-tree (the table is rebuilt; its rows live minutes).

On a large PostgreSQL inbox the new indexes take a while to build, and the
table's writes wait meanwhile: upgrade at a quiet hour.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLE = "posweb_deliveries"
WAITING = "status IN ('pending', 'failed')"
FINISHED = "status IN ('processed', 'dead', 'unhandled', 'rejected')"
UNUSUAL = "status != 'processed'"

#: Name: (columns, partial index's WHERE), before and after; as in ``inbox/tables.py``.
BEFORE: dict[str, tuple[list[str], str | None]] = {
    "ix_posweb_deliveries_due": (["inbox", "status", "next_attempt_at"], None),
    "ix_posweb_deliveries_finished": (["status", "updated_at"], None),
    "ix_posweb_deliveries_status_id": (["inbox", "status", "id"], None),
    "ix_posweb_deliveries_event_status": (["inbox", "event", "status"], None),
    "ix_posweb_deliveries_event_id": (["inbox", "event", "id"], None),
    "ix_posweb_deliveries_merchant_id": (["inbox", "merchant", "id"], None),
}
AFTER: dict[str, tuple[list[str], str | None]] = {
    "ix_posweb_deliveries_waiting": (["merchant", "next_attempt_at"], WAITING),
    "ix_posweb_deliveries_finished": (["status", "updated_at"], FINISHED),
    "ix_posweb_deliveries_unusual": (["status", "event", "merchant", "inbox"], UNUSUAL),
    "ix_posweb_deliveries_event_merchant": (["event", "merchant", "inbox"], None),
    "ix_posweb_deliveries_event_id": (["event", "id"], None),
    "ix_posweb_deliveries_merchant_id": (["merchant", "id", "inbox"], None),
}


def _replace(
    old: dict[str, tuple[list[str], str | None]], new: dict[str, tuple[list[str], str | None]]
) -> None:
    for name in old:
        op.drop_index(name, TABLE)
    for name, (columns, where) in new.items():
        predicate = None if where is None else sa.text(where)
        op.create_index(name, TABLE, columns, sqlite_where=predicate, postgresql_where=predicate)


def upgrade() -> None:
    _replace(BEFORE, AFTER)
    op.drop_index("ix_posweb_duplicates_seen", "posweb_duplicates")
    _rebuild_duplicates(with_rowid=False)


def downgrade() -> None:
    _rebuild_duplicates(with_rowid=True)
    op.create_index("ix_posweb_duplicates_seen", "posweb_duplicates", ["seen_at"])
    _replace(AFTER, BEFORE)


def _rebuild_duplicates(*, with_rowid: bool) -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "posweb_duplicates",
        recreate="always",
        table_kwargs={"sqlite_with_rowid": with_rowid},
    ):
        pass
