"""Statements compiled once by SQLAlchemy, run straight on the driver's cursor.

For the two writes every delivery makes (store it, record its dispatch),
``Connection.execute`` costs three times what the database does: it rebuilds
the execution context, result metadata and parameter processing on every
call. Here SQLAlchemy still writes the SQL for the dialect (``compile``) and
converts every value with its own bind processors (JSON, dates, binary); only
the per-call orchestration is skipped. Everything else in the inbox goes
through SQLAlchemy as usual.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping
from collections.abc import Sequence

import sqlalchemy as sa

__all__ = ["Prepared"]


class Prepared:
    """One statement, compiled for one dialect.

    :param statement: a Core statement using bind parameters for its values.
    :param keys: the value names an INSERT receives (its columns), if any.
    """

    def __init__(
        self, statement: sa.ClauseElement, dialect: sa.Dialect, keys: Sequence[str] | None = None
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys or ()) or None)
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error
        assert isinstance(compiled, sa.sql.compiler.SQLCompiler)
        self._compiled = compiled
        self.sql = compiled.string
        # Every value is a named parameter the caller supplies (no literals), so
        # no per-call construct_params: just convert, in the driver's order.
        processors = {
            bind.key: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for bind in compiled.bind_names
        }
        names = compiled.positiontup if dialect.positional else list(processors)
        assert names is not None and set(names) == set(processors), "unnamed parameters"
        self._steps = [(name, processors[name]) for name in names]
        self._positional = dialect.positional

    def parameters(self, values: Mapping[str, t.Any]) -> Sequence[t.Any] | Mapping[str, t.Any]:
        """``values`` as the driver takes them: converted, in the dialect's paramstyle."""
        converted = [
            values[name] if convert is None else convert(values[name])
            for name, convert in self._steps
        ]
        if self._positional:
            return converted
        return dict(zip((name for name, _ in self._steps), converted, strict=True))

    def execute(self, connection: sa.Connection, values: Mapping[str, t.Any]) -> t.Any:
        """Run on ``connection``'s driver connection, inside its transaction;
        return the DBAPI cursor."""
        parameters = self.parameters(values)
        try:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(self.sql, parameters)
        except self._driver_error as exc:  # as SQLAlchemy would raise it
            raise sa.exc.DBAPIError.instance(self.sql, parameters, exc, self._driver_error) from exc
        return cursor
