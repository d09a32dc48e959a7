"""Loading a parsed body with its schema: presence marks, errors as flat paths.

DealPOS's own deliveries omit fields its documentation marks required, and a
422 is final for it (never retried): a delivery lost for a mark the sender
does not honour. So where the marks are uncertain (every group but Invoice
Payment, whose spec is exact), a body that only lacks marked fields is
accepted and the missing fields are reported; types and formats are enforced
everywhere. ``POSWEB_STRICT_PRESENCE`` makes every mark a 422 again.

.. versionadded:: 0.2
"""

from __future__ import annotations

import typing as t

import marshmallow as ma

from .base import lenient
from .compiled import CompiledSchema

__all__ = ["Loaded", "SchemaLoader", "flatten_errors"]


class Loaded(t.NamedTuple):
    """A validated body, and the marked fields it lacked (``"Customer.Email"``)."""

    data: dict[str, t.Any]
    missing: tuple[str, ...] = ()


class SchemaLoader:
    """Loads bodies with one schema, compiled once (see :mod:`.compiled`).

    :param exact_marks: the schema's required/non-empty marks are exact: a body
        lacking a marked field is always refused.
    """

    def __init__(self, schema: type[ma.Schema], *, exact_marks: bool = True) -> None:
        self.schema = schema
        self.exact_marks = exact_marks
        self._strict = CompiledSchema(schema())
        self._lenient = None if exact_marks else CompiledSchema(lenient(schema)())

    @property
    def compiled(self) -> bool:
        """Whether valid bodies take the compiled fast path."""
        return self._strict.compiled

    def load(self, body: t.Any, *, strict: bool = False) -> Loaded:
        """Validate a parsed body.

        :param strict: refuse a body that lacks marked fields even where the
            marks are uncertain.
        :raises marshmallow.ValidationError: every problem, presence included.
        """
        try:
            return Loaded(t.cast(dict[str, t.Any], self._strict.load(body)))
        except ma.ValidationError as error:
            if strict or self._lenient is None:
                raise
            try:
                data = t.cast(dict[str, t.Any], self._lenient.load(body))
            except ma.ValidationError:
                raise error from None
            # Only presence told the two apart: every strict error is a missing mark.
            messages = error.normalized_messages()  # type: ignore[no-untyped-call]
            return Loaded(data, tuple(flatten_errors(messages)))


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
