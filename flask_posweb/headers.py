"""Request headers as kept with a delivery: without credentials.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from werkzeug.datastructures import Headers as WerkzeugHeaders

__all__ = ["SECRET_HEADERS", "Headers", "RedactedHeaders", "redact"]

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


def redact(headers: Headers, hidden: frozenset[str]) -> RedactedHeaders:
    """The headers worth keeping with a delivery, without ``hidden`` ones
    (lower case: ``Settings.hidden_headers``)."""
    return RedactedHeaders(headers, hidden)
