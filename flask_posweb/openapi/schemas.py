"""JSON Schema from our marshmallow schemas: apispec, plus what it cannot know of our fields.

apispec converts each schema (``required``, ``minLength``, ``additionalProperties``
for unknown fields, ``null`` where allowed). What it cannot read from our
field classes is added here (see :mod:`flask_posweb.schemas.fields`):

- money and counts are JSON numbers within :func:`~flask_posweb.schemas.fields.in_bounds`'s
  exponent; its digit limit, which JSON Schema cannot say, is ``x-max-significant-digits``;
- text accepts numbers too (ids and phones drift to numbers);
- dates are strings whose ``pattern`` admits exactly what
  :func:`~flask_posweb.schemas.fields.parse_pos_datetime` accepts, calendar included;
- booleans accept DealPOS's words (``"Yes"``, ``"true"``...) as marshmallow does.

A lenient schema (presence not enforced, see :mod:`flask_posweb.schemas.loading`)
carries its strict twin's marks as ``x-dealpos-required`` and ``x-dealpos-non-empty``.

.. versionadded:: 0.2
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable
from collections.abc import Iterator

import marshmallow as ma
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import fields
from marshmallow import validate

from ..schemas.base import NON_EMPTY
from ..schemas.fields import MAX_DIGITS
from ..schemas.fields import MAX_EXPONENT
from ..schemas.fields import Count
from ..schemas.fields import DateOrDateTime
from ..schemas.fields import Money
from ..schemas.fields import Text

__all__ = [
    "BLANK_OR_DATE_PATTERN",
    "DATE_PATTERN",
    "SCALARS",
    "SCHEMAS",
    "SPACE",
    "Json",
    "SchemaClass",
    "SchemaPlugin",
    "component_names",
    "pair_twins",
]

Json = dict[str, t.Any]
SchemaClass = type[ma.Schema]

SCHEMAS = "#/components/schemas/"

#: What ``str.strip()`` removes (``str.isspace``): parse_pos_datetime ignores it around a date.
SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# Dates: exactly what parse_pos_datetime accepts, real calendar dates only. [0-9],
# never \d: a validator in Python reads \d as any Unicode digit. ECMA-262 syntax only.
_YEAR = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"  # 0001-9999
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = (
    rf"(?:{_YEAR}-(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    rf"|{_YEAR}-(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    rf"|{_YEAR}-02-(?:0[1-9]|1[0-9]|2[0-8])"
    rf"|{_LEAP_YEAR}-02-29)"
)
# A zone is any offset strictly within 24 hours, as datetime.timezone takes it:
# "+22:99" is 23:39, "+23:60" is 24:00 and refused.
_ZONE = r"(?:Z|[+-](?:(?:[01][0-9]|2[0-2])(?::?[0-9]{2})?|23(?::?[0-5][0-9])?))"
_TIME = rf"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{{1,7}})?)?{_ZONE}?"
#: A date or date-time in any of DealPOS's shapes.
DATE_PATTERN = rf"^{SPACE}*{_DATE}(?:{_TIME})?{SPACE}*$"
#: The same, or blank (read as "no date").
BLANK_OR_DATE_PATTERN = rf"^{SPACE}*(?:{_DATE}(?:{_TIME})?)?{SPACE}*$"

# Bounds as floats: float(1e31) is below 10**31 and float(1e-30) above 10**-30,
# so a validator reading the document with floats never admits a number the
# library refuses (tests/test_openapi_schemas.py checks it).
_HUGE = float(f"1e{MAX_EXPONENT + 1}")
_TINY = float(f"1e-{MAX_EXPONENT}")
_BOUNDS: Json = {
    "exclusiveMinimum": -_HUGE,
    "exclusiveMaximum": _HUGE,
    "x-max-significant-digits": MAX_DIGITS,
}
_RANGE = (
    f"At most {MAX_DIGITS} significant digits, and an exponent within ±{MAX_EXPONENT} "
    f"(the digit limit is `x-max-significant-digits`: JSON Schema cannot say it)."
)

#: Named scalars, referenced by every field of their kind.
SCALARS: dict[str, Json] = {
    "Money": {
        "type": "number",
        **_BOUNDS,
        # Not a non-zero number closer to zero than 1e-30.
        "not": {
            "type": "number",
            "exclusiveMinimum": -_TINY,
            "exclusiveMaximum": _TINY,
            "not": {"const": 0},
        },
        "description": f"A JSON number, read as a decimal (never a float). {_RANGE}",
    },
    "Count": {
        "type": "integer",
        **_BOUNDS,
        "description": f"A whole number (`3.0` is one). {_RANGE}",
    },
    "PosDateTime": {
        "type": "string",
        "pattern": DATE_PATTERN,
        "description": (
            "A date (`2020-07-01`) or date-time with optional seconds, 1 to 7 fractional "
            "digits and an optional zone (`2021-08-20T10:28:56.6691072`, `...Z`, "
            "`...+07:00`); `0001-01-01T00:00:00` means no date."
        ),
    },
    "PosDateTimeOrBlank": {
        "type": "string",
        "pattern": BLANK_OR_DATE_PATTERN,
        "description": "A date or date-time as `PosDateTime`, or blank for no date.",
    },
}


def _scalar(field: fields.Field[t.Any]) -> str | None:
    if isinstance(field, Money):
        return "Money"
    if isinstance(field, Count):
        return "Count"
    if isinstance(field, DateOrDateTime):
        return "PosDateTime" if field.non_empty else "PosDateTimeOrBlank"
    return None


class _Converter(OpenAPIConverter):
    """apispec's converter, plus our fields."""

    def init_attribute_functions(self) -> None:
        super().init_attribute_functions()  # type: ignore[no-untyped-call]
        # Last: it sees (and may replace) what apispec made of the field.
        self.attribute_functions.append(self.posweb2properties)

    def posweb2properties(self, field: fields.Field[t.Any], ret: Json, **kwargs: t.Any) -> Json:
        """Our fields' JSON Schema, where apispec's reading of them is wrong or short."""
        scalar = _scalar(field)
        if scalar is not None:
            ref = {"$ref": SCHEMAS + scalar}
            ret.clear()
            return {"anyOf": [ref, {"type": "null"}]} if field.allow_none else ref
        null = ["null"] if field.allow_none else []
        if isinstance(field, Text):
            attributes: Json = {"type": ["string", "number", *null]}
            if "maxLength" in ret and ret["maxLength"] > 2:
                # A number counts as its text: at most maxLength - 2 digits
                # leaves room for a sign and for the bound's float rounding.
                limit = float(f"1e{ret['maxLength'] - 2}")
                attributes.update(exclusiveMinimum=-limit, exclusiveMaximum=limit)
            return attributes
        if isinstance(field, fields.Boolean) and field.truthy:
            words = sorted(v for v in field.truthy | field.falsy if isinstance(v, str))
            numbers = sorted(v for v in field.truthy | field.falsy if type(v) is int)
            return {
                "type": ["boolean", "string", "integer", *null],
                "enum": [True, False, *words, *numbers, *(None for _ in null)],
            }
        refused = [v for v in field.validators if isinstance(v, validate.NoneOf)]
        if refused:
            return {"not": {"enum": [value for v in refused for value in v.iterable]}}
        return {}


class SchemaPlugin(MarshmallowPlugin):
    """apispec's marshmallow plugin with our converter, our component names,
    and DealPOS's marks on the schemas that do not enforce them."""

    Converter = _Converter

    def __init__(
        self, names: dict[SchemaClass, str], twins: dict[SchemaClass, SchemaClass]
    ) -> None:
        super().__init__(schema_name_resolver=lambda schema: names[_class(schema)])
        #: Lenient schema -> the strict one whose marks it does not enforce.
        self.twins = twins

    # apispec's two base classes name the second parameter differently; it is
    # always passed by position.
    def schema_helper(  # type: ignore[override]
        self, name: str, definition: dict[t.Any, t.Any], schema: t.Any = None, **kwargs: t.Any
    ) -> dict[t.Any, t.Any] | None:
        """Our description and DealPOS's marks, on apispec's conversion of ``schema``."""
        helper = super().schema_helper
        converted = helper(name, definition, schema=schema, **kwargs)  # type: ignore[no-untyped-call]
        if converted is None or schema is None:  # a component given as JSON Schema
            return None
        json_schema = t.cast(Json, converted)
        cls = _class(schema)
        description = _description(cls)
        if description:
            json_schema["description"] = description
        strict = self.twins.get(cls)
        if strict is not None:
            _add_marks(json_schema, strict)
        return json_schema


def _class(schema: t.Any) -> SchemaClass:
    return type(schema) if isinstance(schema, ma.Schema) else t.cast(SchemaClass, schema)


def _description(cls: SchemaClass) -> str:
    """The docstring's first paragraph, reST literals as Markdown."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split()).replace("``", "`")


def _non_empty(field: fields.Field[t.Any]) -> bool:
    return NON_EMPTY in field.validators or bool(getattr(field, "non_empty", False))


def _add_marks(json_schema: Json, strict: SchemaClass) -> None:
    """DealPOS's presence marks, which this schema describes but does not enforce."""
    declared = strict._declared_fields
    required = sorted(name for name, field in declared.items() if field.required)
    if required:
        json_schema["x-dealpos-required"] = required
    for name, field in declared.items():
        if _non_empty(field) and name in json_schema.get("properties", {}):
            json_schema["properties"][name]["x-dealpos-non-empty"] = True


def _children(cls: SchemaClass) -> Iterator[tuple[str, SchemaClass]]:
    """The nested schemas of ``cls``, by field name (list items included)."""
    for name, field in cls._declared_fields.items():
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested) and isinstance(inner.nested, type):
            yield name, inner.nested


def pair_twins(
    relaxed: SchemaClass, strict: SchemaClass, twins: dict[SchemaClass, SchemaClass]
) -> None:
    """Record ``relaxed`` as the lenient twin of ``strict``, nested schemas included."""
    twins[relaxed] = strict
    strict_children = dict(_children(strict))
    for name, child in _children(relaxed):
        if name in strict_children and child is not strict_children[name]:
            pair_twins(child, strict_children[name], twins)


def component_names(
    roots: Iterable[SchemaClass], twins: dict[SchemaClass, SchemaClass]
) -> dict[SchemaClass, str]:
    """A unique component name per schema: ``InvoiceSchema`` is ``Invoice``, and so
    is its lenient twin; when both are in one document, the strict one is
    ``InvoiceStrict``."""
    found: list[SchemaClass] = []

    def visit(cls: SchemaClass) -> None:
        if cls not in found:
            found.append(cls)
            for _, child in _children(cls):
                visit(child)

    for root in roots:
        visit(root)

    def base(cls: SchemaClass) -> str:
        name = cls.__name__.removeprefix("Lenient") if cls in twins else cls.__name__
        return name.removesuffix("Schema") or name

    names: dict[SchemaClass, str] = {}
    relaxed_bases = {base(cls) for cls in found if cls in twins}
    for cls in found:
        name = base(cls)
        if cls not in twins and name in relaxed_bases and cls in twins.values():
            name += "Strict"
        taken = set(names.values())
        unique, number = name, 2
        while unique in taken:
            unique, number = f"{name}{number}", number + 1
        names[cls] = unique
    return names
