"""Writes :mod:`flask_posweb.typed`: a ``TypedDict`` per event, from the catalogue.

The catalogue and its schemas are the one list of events and fields; the typed
payloads are derived from them, never written by hand::

    python -m flask_posweb.typedicts > flask_posweb/typed.py

``tests/test_typed.py`` fails when the file is not what this writes.

A field is ``NotRequired`` unless its presence is enforced: only Invoice
Payment's marks are exact (see :mod:`.schemas.loading`), so elsewhere every field may be
missing or ``null``. Unknown fields are kept in ``event.data`` too; a
``TypedDict`` cannot name them (reach them through ``event.raw``, or a
``WebhookEvent[dict[str, Any]]``).

.. versionadded:: 0.2
"""

from __future__ import annotations

import textwrap
import typing as t

import marshmallow as ma
from marshmallow import fields

from .events import EVENTS
from .schemas.fields import Count
from .schemas.fields import DateOrDateTime
from .schemas.fields import Money
from .schemas.fields import PosDate
from .schemas.fields import Text

__all__ = ["render", "type_name"]

# No ``from __future__ import annotations`` in the generated module: TypedDict
# reads ``NotRequired`` when the class is made, which a string annotation hides
# (every key would count as required at run time). Nested types come first.
HEADER = '''"""Typed payloads of the DealPOS events: ``WebhookEvent[PaymentCreated]``.

Generated from the catalogue by ``python -m flask_posweb.typedicts``;
do not edit. A field is ``NotRequired`` unless its presence is enforced (only
Invoice Payment's marks are exact); unknown fields are kept in ``event.data``
but not named here.

.. versionadded:: 0.2
"""

import datetime as dt
import typing as t
from decimal import Decimal

from typing_extensions import NotRequired
from typing_extensions import TypedDict
'''


def type_name(event: str) -> str:
    """``payment_written_off`` -> ``PaymentWrittenOff``."""
    return "".join(part.capitalize() for part in event.split("_"))


def _schema_name(schema: type[ma.Schema]) -> str:
    return schema.__name__.removesuffix("Schema")


class _Writer:
    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.done: dict[tuple[type[ma.Schema], bool], str] = {}

    def schema(self, schema: type[ma.Schema], exact: bool, name: str | None = None) -> str:
        """The name of the TypedDict for ``schema``, written once."""
        key = (schema, exact)
        if key in self.done:
            return self.done[key]
        declared = schema._declared_fields
        if not declared:
            self.done[key] = "dict[str, t.Any]"
            return self.done[key]
        name = name or _schema_name(schema)
        self.done[key] = name
        lines = [f"class {name}(TypedDict):", f'    """{_summary(schema)}"""', ""]
        for field_name, field in declared.items():
            value = self.value(field, exact)
            # Where presence is not enforced, a field may be missing or null.
            nullable = field.allow_none or not exact
            if nullable and not value.endswith("| None"):
                value = f"{value} | None"
            if not (exact and field.required):
                value = f"NotRequired[{value}]"
            lines.append(f"    {field_name}: {value}")
        self.blocks.append("\n".join(lines))
        return name

    def value(self, field: fields.Field[t.Any], exact: bool) -> str:
        """The loaded value's type (without ``None``)."""
        if isinstance(field, PosDate):
            return "dt.date | None"  # "0001-01-01" and "" load as None
        if isinstance(field, DateOrDateTime):
            return "dt.date | dt.datetime | None"
        if isinstance(field, Money):
            return "Decimal"
        if isinstance(field, Count):
            return "int"
        if isinstance(field, Text):
            return "str"
        if isinstance(field, fields.Boolean):
            return "bool"
        if isinstance(field, fields.Nested) and isinstance(field.nested, type):
            return self.schema(field.nested, exact)
        if isinstance(field, fields.List):
            return f"list[{self.value(field.inner, exact)}]"
        return "dict[str, t.Any]"


def _summary(schema: type[ma.Schema]) -> str:
    """The schema's first sentence, as a docstring that fits the line length."""
    doc = " ".join((schema.__doc__ or schema.__name__).split()).replace('"""', "'")
    first = doc.split(". ")[0].rstrip(".") + "."
    return "\n    ".join(textwrap.wrap(first, 90))


def render() -> str:
    """The source of :mod:`flask_posweb.typed`."""
    writer = _Writer()
    aliases: list[str] = []
    for event in EVENTS.values():
        name = type_name(event.name)
        written = writer.schema(event.schema, event.exact_marks, name)
        if written != name:
            aliases.append(f"{name} = {written}")
    body = "\n\n\n".join(writer.blocks)
    names = {type_name(e) for e in EVENTS} | {b.split("(")[0][6:] for b in writer.blocks}
    exported = "\n".join(f'    "{n}",' for n in sorted(names))
    return (
        f"{HEADER}\n__all__ = [\n{exported}\n]\n\n\n{body}\n\n\n"
        + "\n".join(f"#: {alias.split(' = ')[0]}'s payload.\n{alias}" for alias in aliases)
        + "\n"
    )


if __name__ == "__main__":  # pragma: no cover - the writer's command line
    print(render(), end="")
