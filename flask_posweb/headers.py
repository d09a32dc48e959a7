"""Request headers as kept with a delivery: without credentials.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from werkzeug.datastructures import Headers as WerkzeugHeaders

from .exceptions import HeadersTooLargeError

__all__ = ["SECRET_HEADERS", "Headers", "RedactedHeaders", "check_bounds", "redact"]

#: Request headers: werkzeug's (case-insensitive) or any mapping.
Headers: t.TypeAlias = "WerkzeugHeaders | Mapping[str, str]"

#: Headers never stored or shown: they carry credentials.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


class RedactedHeaders(Mapping[str, str]):
    """Request headers without credentials: case-insensitive, filtered on access.

    A view rather than a copy: most receivers never look at headers, and
    copying them is measurable on the hot path. ``dict(...)`` makes the copy
    the inbox stores.
    """

    __slots__ = ("_headers", "_hidden")

    def __init__(self, headers: Headers, hidden: frozenset[str] = SECRET_HEADERS) -> None:
        self._headers = (
            headers if isinstance(headers, WerkzeugHeaders) else WerkzeugHeaders(headers)
        )
        self._hidden = hidden

    def __getitem__(self, name: str) -> str:
        if name.lower() in self._hidden:
            raise KeyError(name)
        return self._headers[name]

    def __iter__(self) -> t.Iterator[str]:
        return (name for name, _ in self._headers.items() if name.lower() not in self._hidden)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"RedactedHeaders({dict(self)!r})"


def check_bounds(headers: Headers, max_count: int, max_bytes: int) -> None:
    """Refuse headers that are more than ``max_count``, or whose names and
    values hold more than ``max_bytes`` in all: a delivery keeps its headers,
    and the body's size limit does not bound them.

    WSGI gives header values as latin-1 text: a character is a byte.

    :raises HeadersTooLargeError: 431, saying which bound was passed.
    """
    items = list(headers.items())
    if len(items) > max_count:
        raise HeadersTooLargeError(
            f"The request has {len(items)} headers; at most {max_count} are accepted."
        )
    size = sum(len(name) + len(value) for name, value in items)
    if size > max_bytes:
        raise HeadersTooLargeError(
            f"The request's headers hold {size} bytes; at most {max_bytes} are accepted."
        )


def redact(headers: Headers, hidden: frozenset[str]) -> RedactedHeaders:
    """The headers worth keeping with a delivery, without ``hidden`` ones
    (lower case: ``Settings.hidden_headers``)."""
    return RedactedHeaders(headers, hidden)
