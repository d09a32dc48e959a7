"""The inbox's table layout, versioned by Alembic.

- A new, empty database gets the latest layout on first use (no command
  needed: the README's two commands work on a fresh machine).
- A store behind this code is never migrated under traffic: every use answers
  503 and logs the command to run, ``flask posweb db upgrade`` (the ``db``
  commands themselves work on it).
- The version lives in ``posweb_alembic_version``: the host's own Alembic
  (Flask-Migrate) never sees our tables, nor we its.

.. versionadded:: 0.2
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import typing as t

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from ...exceptions import StoreError
from ..engines import Engines
from ..tables import deliveries
from ..tables import metadata

__all__ = ["VERSION_TABLE", "Layout", "StoreOutdatedError", "head"]

logger = logging.getLogger("flask_posweb")

VERSION_TABLE = "posweb_alembic_version"
#: A store of 0.1 kept no version: its tables are this revision.
UNVERSIONED = "0001"


class StoreOutdatedError(StoreError):
    """The store's layout is not the one this code needs."""


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "flask_posweb.inbox:migrations")
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The revision this code needs."""
    return t.cast(str, ScriptDirectory.from_config(_config()).get_current_head())


def current(connection: sa.Connection) -> str | None:
    """The store's revision; ``None`` for a database without our tables."""
    inspector = sa.inspect(connection)
    if inspector.has_table(VERSION_TABLE):
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        return t.cast(str | None, connection.execute(sa.select(version.c.version_num)).scalar())
    if inspector.has_table(deliveries.name):
        return UNVERSIONED
    return None


class Layout:
    """Keeps one inbox's tables at :func:`head`.

    :param write: runs a function in the inbox's write transaction (under its
        write lock: no writer of ours runs meanwhile).
    """

    def __init__(
        self, engines: Engines, write: t.Callable[[t.Callable[[sa.Connection], t.Any]], t.Any]
    ) -> None:
        self.engines = engines
        self._write = write
        self._ready = False
        self._outdated = ""  # why the last check refused, if it did
        self._checked = 0.0
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Make sure the layout is current; create it in an empty database.

        Cheap once it is: one check per process. While the store is behind,
        each call looks again (at most once a second), so servers recover as
        soon as ``flask posweb db upgrade`` has run.

        :raises StoreOutdatedError: the store is at another revision.
        """
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            if self._outdated and time.monotonic() - self._checked < 1:
                raise StoreOutdatedError(self._outdated)
            with self.engines.read.connect() as connection:
                found = current(connection)
            if found is None:
                found = self._write(self._create)
            if found != head():
                self._checked = time.monotonic()
                self._outdated = (
                    f"The inbox's tables are at revision {found}, this Flask-PosWeb needs "
                    f"{head()}: run 'flask posweb db upgrade'."
                )
                logger.error("%s", self._outdated)
                raise StoreOutdatedError(self._outdated)
            self._ready = True

    def _create(self, connection: sa.Connection) -> str | None:
        """Create the latest layout unless another process just did."""
        if connection.dialect.name == "postgresql":
            # Processes starting together queue here; the others then find it done.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(0x706F73776562)))
        found = current(connection)
        if found is None:
            metadata.create_all(connection)
            command.stamp(_config(connection), "head")
            logger.info("Created the inbox's tables (revision %s).", head())
            return head()
        return found

    def upgrade(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Migrate the store to ``revision``; returns (before, after)."""

        def migrate(connection: sa.Connection) -> tuple[str | None, str | None]:
            before = current(connection)
            if before == UNVERSIONED and not sa.inspect(connection).has_table(VERSION_TABLE):
                command.stamp(_config(connection), UNVERSIONED)
            if before is None:
                metadata.create_all(connection)
                command.stamp(_config(connection), "head")
            else:
                command.upgrade(_config(connection), revision)
            return before, current(connection)

        result = t.cast(tuple[str | None, str | None], self._write(migrate))
        self._ready, self._outdated = False, ""
        return result

    def downgrade(self, revision: str) -> tuple[str | None, str | None]:
        """Migrate the store back to ``revision``; returns (before, after)."""

        def migrate(connection: sa.Connection) -> tuple[str | None, str | None]:
            before = current(connection)
            command.downgrade(_config(connection), revision)
            return before, current(connection)

        result = t.cast(tuple[str | None, str | None], self._write(migrate))
        self._ready, self._outdated = False, ""
        return result

    def current(self) -> str | None:
        """The store's revision (``None``: no tables yet)."""
        with self.engines.read.connect() as connection:
            return current(connection)
