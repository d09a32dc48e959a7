"""Indexes for the delivery log page: its lists and counts by status and event.

The page lists deliveries newest first (``ORDER BY id DESC LIMIT 51``) with
filters, and counts them per status. Without these, a filter matching few or
no deliveries (``status = 'pending'``, an event never received) scans every
row, and counts for one event read every row: about a second each at a
million stored deliveries on SQLite (``benchmarks/log_page.py``). With them:

- ``(inbox, status, id)`` walks one status newest first;
- ``(inbox, event, id)`` walks one event newest first;
- ``(inbox, event, status)`` counts one event's deliveries per status without
  reading a row, and walks one status of one event.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Name: columns; the same as in ``inbox/tables.py``.
INDEXES = {
    "ix_posweb_deliveries_status_id": ["inbox", "status", "id"],
    "ix_posweb_deliveries_event_id": ["inbox", "event", "id"],
    "ix_posweb_deliveries_event_status": ["inbox", "event", "status"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "posweb_deliveries", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, "posweb_deliveries")
