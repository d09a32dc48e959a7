"""Which deliveries an operator means: a :class:`Filter`, plain values only.

The store turns a filter into SQL (:func:`~.statements.where`); the CLI, the
log page and the public read API build them without touching a database.

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

__all__ = ["Filter"]


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which deliveries an operator means (every field optional, combined with AND).

    .. versionadded:: 0.1
    """

    status: Sequence[str] = ()
    event: Sequence[str] = ()
    #: Received at or after (naive UTC).
    since: dt.datetime | None = None
    #: Received before (naive UTC).
    until: dt.datetime | None = None
    ids: Sequence[int] = ()
    #: Text the raw body contains (its UTF-8 bytes). A scan of the bodies:
    #: callers bound it with ``since``/``until``.
    text: str | None = None
    #: Merchants' names; ``None`` among them means the app's own deliveries.
    #:
    #: .. versionadded:: 0.3
    merchant: Sequence[str | None] = ()

    def __post_init__(self) -> None:
        # ``Filter(status="failed")`` means one status, not the letters of one.
        for name in ("status", "event", "merchant"):
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, (getattr(self, name),))

    @property
    def narrowed(self) -> bool:
        """Whether it chooses anything less than every delivery."""
        return bool(self.status or self.event or self.since or self.until or self.ids or self.text)
