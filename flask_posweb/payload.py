"""From raw bytes to a validated body: parsing and validation, no Flask.

.. versionadded:: 0.1
"""

from __future__ import annotations

import decimal
import json
import typing as t

import marshmallow as ma

from .exceptions import PayloadError
from .exceptions import UnsupportedMediaTypeError
from .exceptions import ValidationFailedError

__all__ = ["check_json", "flatten_errors", "load", "parse", "validated"]


def check_json(mimetype: str | None) -> None:
    """:raises UnsupportedMediaTypeError: unless the body is declared JSON."""
    if mimetype != "application/json" and not (mimetype or "").endswith("+json"):
        raise UnsupportedMediaTypeError(mimetype)


def _no_constants(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not valid JSON")


#: Built once: ``json.loads`` with options builds a decoder on every call.
_DECODER = json.JSONDecoder(parse_float=decimal.Decimal, parse_constant=_no_constants)


def parse(raw: bytes) -> dict[str, t.Any]:
    """Parse a body that must be one JSON object.

    Numbers with a fraction become :class:`~decimal.Decimal`: money must never
    pass through a float. ``NaN`` and ``Infinity`` are refused.

    :raises PayloadError: not JSON, or not an object.
    """
    try:
        # As json.loads(bytes): UTF-8, -16 or -32, told apart by the first bytes.
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
        raise PayloadError(f"The body is not valid JSON: {_reason(exc)}") from None
    if not isinstance(body, dict):
        raise PayloadError(f"The body must be a JSON object, not {_json_type(body)}.")
    return body


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}."
    if isinstance(exc, RecursionError):
        return "nested too deeply."
    return "it cannot be decoded."


def _json_type(value: t.Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


class Loader(t.Protocol):
    """An event type or a schema: anything that loads a parsed body."""

    def load(self, body: t.Any) -> t.Any: ...


def load(loader: Loader, body: dict[str, t.Any]) -> dict[str, t.Any]:
    """Validate a parsed body against its event's (or call's) schema.

    :raises ValidationFailedError: with ``{field path: [messages]}``.
    """
    try:
        return t.cast(dict[str, t.Any], loader.load(body))
    except ma.ValidationError as exc:
        raise ValidationFailedError(flatten_errors(exc.normalized_messages())) from exc  # type: ignore[no-untyped-call]


def validated(
    loader: Loader, raw: bytes, mimetype: str | None = "application/json"
) -> dict[str, t.Any]:
    """The whole way from a request body to validated data: declared JSON, one
    object, valid for ``loader``.

    :raises WebhookError: 415, 400 or 422 (see :func:`check_json`, :func:`parse`, :func:`load`).
    """
    check_json(mimetype)
    return load(loader, parse(raw))


def flatten_errors(messages: t.Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as ``{"Customer.Email": [...], "Variants.0.Code": [...]}``.

    Paths use DealPOS's field names; list items are numbered from 0.
    """
    if not isinstance(messages, dict):
        items = messages if isinstance(messages, list) else [messages]
        return {prefix or ma.exceptions.SCHEMA: [str(item) for item in items]}
    flat: dict[str, list[str]] = {}
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key == ma.exceptions.SCHEMA and prefix:
            path = prefix
        for sub_path, sub_messages in flatten_errors(value, path).items():
            flat.setdefault(sub_path, []).extend(sub_messages)
    return flat
