"""The base schema and the field constructors every event schema is built from.

Field attributes are spelled exactly as DealPOS sends them (``InvoiceID``,
``SalesNTax``), so a handler finds known and unknown fields under the same
keys as in the body, and error paths name the sender's fields.

Marks follow the catalogue (``catalog.json``): ``required`` means the key must
be present and not ``null``; ``non_empty`` means a string or list, when given,
must not be empty. Every other field may be missing or ``null``.
"""

from __future__ import annotations

import copy
import typing as t

import marshmallow as ma
from marshmallow import fields
from marshmallow import validate

from .fields import Count
from .fields import DateOrDateTime
from .fields import Money
from .fields import PosDate
from .fields import Text

__all__ = [
    "BaseSchema",
    "OpenSchema",
    "boolean",
    "count",
    "date",
    "datetime",
    "many",
    "money",
    "derive",
    "nested",
    "strings",
    "text",
]


class BaseSchema(ma.Schema):
    """Base of every DealPOS body schema, nested ones included.

    Unknown keys are kept as received (``INCLUDE``), never rejected: DealPOS adds
    fields without notice. ``unknown`` does not propagate into ``Nested``, hence
    one base for all.
    """

    class Meta:
        unknown = ma.INCLUDE


class OpenSchema(BaseSchema):
    """Any JSON object: for bodies whose fields DealPOS has not published."""


#: ``non_empty`` in the catalogue: minLength 1 for strings, minItems 1 for lists.
NON_EMPTY = validate.Length(min=1, error="Must not be empty.")


def _marks(required: bool) -> dict[str, t.Any]:
    return {"required": required, "allow_none": not required}


def text(*, required: bool = False, non_empty: bool = False) -> fields.Field[t.Any]:
    """A string field (numbers are kept as their text)."""
    return Text(validate=NON_EMPTY if non_empty else None, **_marks(required))


def money(*, required: bool = False) -> fields.Field[t.Any]:
    """A number as :class:`~decimal.Decimal` (money, quantities, rates)."""
    return Money(**_marks(required))


def count(*, required: bool = False) -> fields.Field[t.Any]:
    """A whole number (counts, codes)."""
    return Count(**_marks(required))


def boolean(*, required: bool = False) -> fields.Field[t.Any]:
    """A boolean; ``"Yes"``/``"No"`` and ``"true"``/``"false"`` are accepted too."""
    return fields.Boolean(**_marks(required))


def date(*, required: bool = False, non_empty: bool = False) -> fields.Field[t.Any]:
    """A calendar date; a date-time loads as its date part."""
    return PosDate(non_empty=non_empty, **_marks(required))


def datetime(*, required: bool = False, non_empty: bool = False) -> fields.Field[t.Any]:
    """A date-time, or a date when only a date was sent."""
    return DateOrDateTime(non_empty=non_empty, **_marks(required))


def nested(
    schema: type[BaseSchema] | None = None, *, required: bool = False
) -> fields.Field[t.Any]:
    """An object validated by ``schema``, or any object when its fields are unknown."""
    if schema is None:
        return fields.Dict(**_marks(required))
    return fields.Nested(schema, **_marks(required))


def derive(
    base: type[BaseSchema],
    *,
    name: str,
    doc: str,
    required: t.Iterable[str] = (),
    optional: t.Iterable[str] = (),
    **fields: fields.Field[t.Any],
) -> type[BaseSchema]:
    """Derive a sibling schema from ``base`` with other required marks.

    For sibling events that share a body but whose pages mark it differently
    (or showed only part of it): the named fields become required or optional,
    ``fields`` replace or add fields; everything else is inherited. A field
    made optional loses its non-empty mark as well.
    """
    overrides: dict[str, t.Any] = {"__doc__": doc, "__module__": base.__module__}
    for names, is_required in ((required, True), (optional, False)):
        for field_name in names:
            field = copy.copy(base._declared_fields[field_name])
            field.required, field.allow_none = is_required, not is_required
            if not is_required:  # an unseen mark is no mark: drop non-empty too
                field.validators = [v for v in field.validators if v is not NON_EMPTY]
                if isinstance(field, DateOrDateTime):
                    field.non_empty = False
            overrides[field_name] = field
    derived = ma.schema.SchemaMeta(name, (base,), {**overrides, **fields})  # type: ignore[no-untyped-call]
    return t.cast(type[BaseSchema], derived)


def many(
    schema: type[BaseSchema] | None = None, *, required: bool = False, non_empty: bool = False
) -> fields.Field[t.Any]:
    """A list of objects, each validated by ``schema``, or any objects when its
    fields are unknown (kept as plain dicts: cheaper than a schema per line)."""
    return fields.List(
        fields.Nested(schema) if schema is not None else fields.Dict(),
        validate=NON_EMPTY if non_empty else None,
        **_marks(required),
    )


def strings(*, required: bool = False) -> fields.Field[t.Any]:
    """A list of strings."""
    return fields.List(Text(), **_marks(required))
