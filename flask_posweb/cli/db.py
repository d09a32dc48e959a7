"""``flask posweb db upgrade | downgrade | current``: the inbox's tables, versioned with Alembic.

.. versionadded:: 0.3
    (0.1 and 0.2 kept the whole command line in ``cli.py``.)
"""

from __future__ import annotations

import click

from .common import PosWebGroup
from .common import inbox_state

__all__ = ["db"]


@click.group("db", cls=PosWebGroup)
def db() -> None:
    """The inbox's tables: versioned with Alembic (posweb_alembic_version)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Migrate the inbox's tables to this Flask-PosWeb's layout (data kept).

    Run it once after installing a release that changes the layout; until
    then the app answers 503 (DealPOS retries) and logs this command.
    """
    before, after = inbox_state().require_inbox().database.upgrade(revision)
    if before == after:
        click.echo(f"The inbox is at revision {after} already.")
    else:
        click.echo(f"Upgraded the inbox from revision {before or 'none'} to {after}.")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the inbox's tables back to REVISION (for a release rolled back)."""
    before, after = inbox_state().require_inbox().database.downgrade(revision)
    click.echo(f"Downgraded the inbox from revision {before} to {after or 'none'}.")


@db.command("current")
def db_current() -> None:
    """Show the inbox's revision and the one this code needs."""
    database = inbox_state().require_inbox().database
    found, needed = database.revision(), database.head()
    status = "up to date" if found == needed else "run 'flask posweb db upgrade'"
    click.echo(
        f"Inbox at revision {found or 'none (created on first use)'}; "
        f"this code needs {needed}: {status}."
    )
