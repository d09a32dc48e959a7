"""From raw bytes to a validated body: parsing and validation, no Flask.

Text is strict (RFC 8259): a body is UTF-8 (a leading byte-order mark is
ignored), and a ``\\uD800``-style escape of a lone surrogate, valid ASCII but
not text, is refused like invalid bytes. Numbers with a fraction or an
exponent become :class:`~decimal.Decimal`: money never passes through a float.

.. versionadded:: 0.1
"""

from __future__ import annotations

import codecs
import decimal
import json
import re
import typing as t

import marshmallow as ma

from .exceptions import PayloadError
from .exceptions import UnsupportedMediaTypeError
from .exceptions import ValidationFailedError
from .schemas.loading import Loaded
from .schemas.loading import flatten_errors

__all__ = ["check_json", "load", "parse", "validated"]


def check_json(mimetype: str | None) -> None:
    """:raises UnsupportedMediaTypeError: unless the body is declared JSON."""
    if mimetype != "application/json" and not (mimetype or "").endswith("+json"):
        raise UnsupportedMediaTypeError(mimetype)


class _NotJSON(ValueError):
    """A token Python's decoder accepts and JSON does not (``NaN``, ``Infinity``)."""


def _no_constants(name: str) -> t.NoReturn:
    raise _NotJSON(f"{name} is not a JSON number (RFC 8259 has no NaN or Infinity).")


class _DuplicateKey(ValueError):
    """One object names a key twice."""


def _one_value_per_key(pairs: list[tuple[str, t.Any]]) -> dict[str, t.Any]:
    """An object, refused if a key repeats: RFC 8259 leaves open which value
    counts, so the receivers (last one wins) and another reader of the kept
    raw body (first one wins) could see two different payments."""
    body = dict(pairs)
    if len(body) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return body


#: Built once: ``json.loads`` with options builds a decoder on every call.
_DECODER = json.JSONDecoder(
    parse_float=decimal.Decimal,
    parse_constant=_no_constants,
    object_pairs_hook=_one_value_per_key,
)
#: An escape that may stand for half of a surrogate pair (checked only then).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode(raw: bytes) -> str:
    """The body as text.

    :raises PayloadError: not UTF-8 (UTF-16 and UTF-32 included).
    """
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    elif json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        raise PayloadError("The body must be UTF-8 (RFC 8259), not UTF-16 or UTF-32.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"The body is not valid UTF-8: invalid byte at offset {exc.start}."
        ) from None


def parse(raw: bytes) -> dict[str, t.Any]:
    """Parse a body that must be one JSON object of valid text.

    :raises PayloadError: not UTF-8, not JSON, not an object, a key twice in one
        object, or a lone surrogate.
    """
    text = decode(raw)
    try:
        body = _DECODER.decode(text)
    except _DuplicateKey as exc:
        raise PayloadError(
            f"The body is ambiguous: the key {exc.args[0]!r} appears twice in one object."
        ) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise PayloadError(f"The body is not valid JSON: {_reason(exc)}") from None
    if not isinstance(body, dict):
        raise PayloadError(f"The body must be a JSON object, not {_json_type(body)}.")
    if _SURROGATE_ESCAPE.search(raw):
        path = _lone_surrogate(body)
        if path is not None:
            raise PayloadError(
                f"The body is not valid text: a \\u escape at {path or 'a key'} stands for a "
                "lone surrogate (U+D800 to U+DFFF)."
            )
    return body


def _lone_surrogate(value: t.Any, path: str = "") -> str | None:
    """The path of the first string (or key) holding a lone surrogate, if any.

    JSON turns an escaped surrogate *pair* into one character; only a half of
    one survives as a surrogate, which no UTF-8 encoder accepts.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "$"
        return None
    items: t.Iterable[tuple[t.Any, t.Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and _lone_surrogate(key, where) is not None:
            return where
        found = _lone_surrogate(item, where)
        if found is not None:
            return found
    return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}."
    if isinstance(exc, RecursionError):
        return "nested too deeply."
    if isinstance(exc, _NotJSON):
        return str(exc)
    return "a number has too many digits." if "digits" in str(exc) else "it cannot be decoded."


def _json_type(value: t.Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


class Loader(t.Protocol):
    """An event type or a loyalty call: anything that loads a parsed body."""

    def load(self, body: t.Any, *, strict: bool = False) -> Loaded: ...


def load(loader: Loader, body: dict[str, t.Any], *, strict: bool = False) -> Loaded:
    """Validate a parsed body against its event's (or call's) schema.

    :raises ValidationFailedError: with ``{field path: [messages]}``.
    """
    try:
        return loader.load(body, strict=strict)
    except ma.ValidationError as exc:
        messages = exc.normalized_messages()  # type: ignore[no-untyped-call]
        raise ValidationFailedError(flatten_errors(messages)) from exc


def validated(
    loader: Loader,
    raw: bytes,
    mimetype: str | None = "application/json",
    *,
    strict: bool = False,
) -> Loaded:
    """The whole way from a request body to validated data: declared JSON, one
    object of valid text, valid for ``loader``.

    :param strict: refuse bodies lacking marked fields even where the marks
        are uncertain (``POSWEB_STRICT_PRESENCE``).
    :raises WebhookError: 415, 400 or 422 (see :func:`check_json`, :func:`parse`, :func:`load`).
    """
    check_json(mimetype)
    return load(loader, parse(raw), strict=strict)
