"""The layout of Flask-PosWeb 0.1: one table for deliveries and loyalty answers.

0.1 kept no version: a store with ``posweb_deliveries`` and no
``posweb_alembic_version`` is at this revision (see ``migrations.current``).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "posweb_deliveries",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("event", sa.String(80), nullable=False),
        sa.Column("dedup_key", sa.String(160), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("replay", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("locked_by", sa.String(64), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_posweb_deliveries_due", "posweb_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_posweb_deliveries_received", "posweb_deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_table("posweb_deliveries")
