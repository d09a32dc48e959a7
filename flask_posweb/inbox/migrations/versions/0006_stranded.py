"""Inbox 0.3: receiver sets know when a dispatcher that has them was last alive.

``posweb_receiver_sets`` gains ``last_seen``; every set stored so far counts
as seen at the upgrade, so that nothing is stranded before the dispatchers
deployed with it have had ``POSWEB_STRANDED_AFTER`` to show themselves. The
``stranded`` status needs no change of the schema (statuses are strings).

Downgrading makes stranded deliveries pending again: 0.2 knows no such status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("posweb_receiver_sets") as sets:
        sets.add_column(sa.Column("last_seen", sa.DateTime(), nullable=True))
    # Naive UTC, as every time the inbox stores (SQLite's CURRENT_TIMESTAMP is UTC).
    postgresql = op.get_bind().dialect.name == "postgresql"
    now = "timezone('UTC', now())" if postgresql else "CURRENT_TIMESTAMP"
    op.execute(f"UPDATE posweb_receiver_sets SET last_seen = {now}")


def downgrade() -> None:
    op.execute("UPDATE posweb_deliveries SET status = 'pending' WHERE status = 'stranded'")
    with op.batch_alter_table("posweb_receiver_sets") as sets:
        sets.drop_column("last_seen")
