"""Alembic's environment for the inbox's tables (run by :mod:`flask_posweb.inbox.migrations`).

Only online migrations on a connection the caller opened, inside its
transaction; the version is kept in ``posweb_alembic_version``, never in the
host's own ``alembic_version``.
"""

from __future__ import annotations

from alembic import context

from flask_posweb.inbox.migrations import VERSION_TABLE
from flask_posweb.inbox.tables import metadata


def _ours(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate looks at the inbox's own tables only, never the host's."""
    return type_ != "table" or (name or "").startswith("posweb_")


context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    include_name=_ours,
    render_as_batch=True,  # SQLite changes columns by copying the table
)
with context.begin_transaction():
    context.run_migrations()
