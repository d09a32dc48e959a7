"""Inbox 0.3: every delivery and remembered loyalty answer names its merchant.

- ``posweb_deliveries`` gains ``merchant`` (``""``: the app's own credentials,
  which every row kept from 0.2 came with), and an index for one merchant's
  deliveries newest first.
- ``posweb_loyalty_answers`` gains ``merchant``, in its unique key: one
  merchant's order ID is not another's.

Downgrading forgets which merchant sent what; the remembered answers of
merchants (not the app's own) go, as the 0.2 key has no room for them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KEY = "uq_posweb_loyalty_answers_key"


def _merchant() -> sa.Column[str]:
    return sa.Column("merchant", sa.String(64), nullable=False, server_default="")


def upgrade() -> None:
    with op.batch_alter_table("posweb_deliveries") as deliveries:
        deliveries.add_column(_merchant())
    op.create_index(
        "ix_posweb_deliveries_merchant_id", "posweb_deliveries", ["inbox", "merchant", "id"]
    )
    with op.batch_alter_table("posweb_loyalty_answers") as answers:
        answers.add_column(_merchant())
        answers.drop_constraint(KEY, type_="unique")
        answers.create_unique_constraint(KEY, ["inbox", "merchant", "call", "key"])


def downgrade() -> None:
    op.execute("DELETE FROM posweb_loyalty_answers WHERE merchant <> ''")
    with op.batch_alter_table("posweb_loyalty_answers") as answers:
        answers.drop_constraint(KEY, type_="unique")
        answers.create_unique_constraint(KEY, ["inbox", "call", "key"])
        answers.drop_column("merchant")
    op.drop_index("ix_posweb_deliveries_merchant_id", "posweb_deliveries")
    with op.batch_alter_table("posweb_deliveries") as deliveries:
        deliveries.drop_column("merchant")
