"""A compiled fast path for loading valid bodies, with marshmallow as the judge.

marshmallow's ``Schema.load`` is general: error stores, hooks, partial
loading, a dispatch per field. For the plain shapes our schemas declare, the
common case (a valid body) needs none of that, and it is most of the cost of
receiving a webhook (see ``benchmarks/RESULTS.md``). :func:`compile_schema`
turns a schema into straight-line converters, once. A body they do not accept
outright (any error, any unusual shape) is handed to marshmallow itself, so
error messages, and every decision in doubt, stay marshmallow's. The tests
check on random bodies that both give the same result.

Only exact field classes listed here are compiled; a schema using anything
else (hooks, ``data_key``, other validators or fields) is simply not compiled.
"""

from __future__ import annotations

import decimal
import typing as t
from collections.abc import Callable

import marshmallow as ma
from marshmallow import fields

from .base import NON_EMPTY
from .fields import Count
from .fields import DateOrDateTime
from .fields import Money
from .fields import PosDate
from .fields import Text
from .fields import in_bounds
from .fields import parse_pos_datetime

__all__ = ["CompiledSchema", "compile_schema"]

Convert = Callable[[t.Any], t.Any]


class _Slow(Exception):
    """Not for the fast path: an error to report, or a shape marshmallow must judge."""


def _text(value: t.Any) -> t.Any:
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is decimal.Decimal:
        return str(value)
    raise _Slow


def _money(value: t.Any) -> t.Any:
    kind = type(value)
    if kind is int and in_bounds(value):
        return decimal.Decimal(value)
    if kind is decimal.Decimal and in_bounds(value):
        return value  # marshmallow's Decimal(str(value)) is this very value
    raise _Slow


def _count(value: t.Any) -> t.Any:
    if type(value) is int and in_bounds(value):
        return value
    raise _Slow


def _boolean(value: t.Any) -> t.Any:
    if value is True or value is False:
        return value
    raise _Slow


def _mapping(value: t.Any) -> t.Any:
    if type(value) is dict:
        return dict(value)
    raise _Slow


def _dates(field: DateOrDateTime) -> Convert:
    convert = field._convert

    def load(value: t.Any) -> t.Any:
        if type(value) is not str or not value.strip():
            raise _Slow
        try:
            return convert(parse_pos_datetime(value))
        except ValueError:
            raise _Slow from None

    return load


def _list(inner: Convert) -> Convert:
    def load(value: t.Any) -> t.Any:
        if type(value) is not list:
            raise _Slow
        return [inner(item) for item in value]

    return load


def _nested(loader: Callable[[dict[str, t.Any]], dict[str, t.Any]]) -> Convert:
    def load(value: t.Any) -> t.Any:
        if type(value) is not dict:
            raise _Slow
        return loader(value)

    return load


_SIMPLE: dict[type, Convert] = {
    Text: _text,
    Money: _money,
    Count: _count,
    fields.Boolean: _boolean,
}


def _converter(field: fields.Field[t.Any]) -> Convert | None:
    """The fast converter of one field, or ``None`` if it cannot be compiled."""
    if field.data_key is not None or field.attribute is not None:
        return None
    if field.load_default is not ma.missing:
        return None
    validators = list(field.validators)
    non_empty = validators == [NON_EMPTY]
    if validators and not non_empty:
        return None
    kind = type(field)
    convert: Convert | None
    if kind in _SIMPLE:
        convert = _SIMPLE[kind]
    elif kind in (DateOrDateTime, PosDate):
        convert = _dates(t.cast(DateOrDateTime, field))
    elif kind is fields.Dict and field.key_field is None and field.value_field is None:  # type: ignore[attr-defined]
        convert = _mapping
    elif kind is fields.List:
        inner = _converter(field.inner)  # type: ignore[attr-defined]
        convert = None if inner is None else _list(inner)
    elif kind is fields.Nested and _plain_nested(t.cast(fields.Nested, field)):
        loader = compile_schema(t.cast(ma.Schema, field.schema))  # type: ignore[attr-defined]
        convert = None if loader is None else _nested(loader)
    else:
        convert = None
    if convert is None:
        return None
    return _guarded(convert, field.allow_none, non_empty)


def _plain_nested(field: fields.Nested) -> bool:
    return not field.many and field.only is None and not field.exclude and field.unknown is None


def _guarded(convert: Convert, allow_none: bool, non_empty: bool) -> Convert:
    """Add ``None`` and non-empty handling around a converter, as marshmallow does."""

    def load(value: t.Any) -> t.Any:
        if value is None:
            if allow_none:
                return None
            raise _Slow
        result = convert(value)
        if non_empty and not result:
            raise _Slow
        return result

    return load


def compile_schema(schema: ma.Schema) -> Callable[[dict[str, t.Any]], dict[str, t.Any]] | None:
    """The fast loader of ``schema``, or ``None`` if it uses what is not compiled.

    The loader raises ``_Slow`` for anything it does not accept outright.
    """
    if any(schema._hooks.values()) or schema.partial:
        return None
    unknown = schema.unknown
    if unknown not in (ma.INCLUDE, ma.EXCLUDE):
        return None
    compiled: list[tuple[str, Convert, bool]] = []
    for name, field in schema.load_fields.items():
        convert = _converter(field)
        if convert is None:
            return None
        compiled.append((name, convert, field.required))
    known = frozenset(name for name, _, _ in compiled)
    include = unknown == ma.INCLUDE

    def load(data: dict[str, t.Any]) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {}
        for name, convert, required in compiled:
            if name in data:
                result[name] = convert(data[name])
            elif required:
                raise _Slow
        if include:
            for key in data:
                if key not in known:
                    result[key] = data[key]
        return result

    return load


class CompiledSchema:
    """Loads with the compiled fast path, and with marshmallow whenever in doubt.

    :param schema: a schema instance; its ``load`` gives every error message.
    """

    def __init__(self, schema: ma.Schema) -> None:
        self.schema = schema
        self._fast = compile_schema(schema)

    @property
    def compiled(self) -> bool:
        """Whether a fast path exists for this schema."""
        return self._fast is not None

    def load(self, data: t.Any) -> t.Any:
        """Like ``Schema.load``, same result, same errors."""
        if self._fast is not None and type(data) is dict:
            try:
                return self._fast(data)
            except _Slow:
                pass
        return self.schema.load(data)
