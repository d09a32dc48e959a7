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
    "derive",
    "lenient",
    "many",
    "money",
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


def text(
    *, required: bool = False, non_empty: bool = False, max_length: int | None = None
) -> fields.Field[t.Any]:
    """A string field (numbers are kept as their text).

    :param max_length: for text used as a key (an order's ``ID``).
    """
    validators: list[t.Any] = [NON_EMPTY] if non_empty else []
    if max_length is not None:
        validators.append(validate.Length(max=max_length))
    return Text(validate=validators or None, **_marks(required))


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
            overrides[field_name] = _marked(base._declared_fields[field_name], is_required)
    derived = ma.schema.SchemaMeta(name, (base,), {**overrides, **fields})  # type: ignore[no-untyped-call]
    return t.cast(type[BaseSchema], derived)


def _marked(template: fields.Field[t.Any], required: bool) -> fields.Field[t.Any]:
    """A copy of a declared field, required or not; an optional field loses its
    non-empty mark as well (an unseen mark is no mark)."""
    field = copy.copy(template)
    field.required, field.allow_none = required, not required
    if not required:
        field.validators = [v for v in field.validators if v is not NON_EMPTY]
        if isinstance(field, DateOrDateTime):
            field.non_empty = False
    return field


_LENIENT: dict[type[ma.Schema], type[ma.Schema]] = {}


def lenient(schema: type[ma.Schema]) -> type[ma.Schema]:
    """``schema`` without presence marks, at every level: no field is required
    or non-empty, ``null`` is allowed. Types and formats are still checked.

    For events whose marks DealPOS does not honour itself: a body that lacks
    marked fields is accepted, and the marks are reported instead (see
    :class:`~.loading.SchemaLoader`).
    """
    if schema in _LENIENT:
        return _LENIENT[schema]
    overrides: dict[str, t.Any] = {"__module__": schema.__module__, "__doc__": schema.__doc__}
    for name, declared in schema._declared_fields.items():
        overrides[name] = _relaxed(declared)
    derived = ma.schema.SchemaMeta(f"Lenient{schema.__name__}", (schema,), overrides)  # type: ignore[no-untyped-call]
    _LENIENT[schema] = t.cast(type[ma.Schema], derived)
    return _LENIENT[schema]


def _relaxed(declared: fields.Field[t.Any]) -> fields.Field[t.Any]:
    field = _marked(declared, required=False)
    if isinstance(field, fields.Nested) and isinstance(field.nested, type):
        field.nested = lenient(field.nested)
        field._schema = None
    elif isinstance(field, fields.List):
        field.inner = _relaxed(field.inner)
    return field


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
