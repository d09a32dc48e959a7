"""The inboxes whose backlog this process reports, read when metrics are collected.

Gauges are never kept per process: each collection reads
:meth:`~flask_posweb.Inbox.backlog` from the store, so every process (every
gunicorn worker) reports the same, whole figures, and nothing is summed.

.. versionadded:: 0.3
"""

from __future__ import annotations

import logging
import threading
import typing as t
from collections.abc import Iterator

from .instruments import backlog_readings

if t.TYPE_CHECKING:
    from ..inbox import Inbox

__all__ = ["read", "unwatch", "watch"]

logger = logging.getLogger("flask_posweb")

#: The inboxes of the apps with metrics in this process, by inbox name (two apps
#: on one inbox report it once).
_watched: dict[str, Inbox] = {}
_lock = threading.Lock()


def watch(inbox: Inbox) -> None:
    """Report ``inbox``'s backlog from now on."""
    with _lock:
        _watched.setdefault(inbox.name, inbox)


def unwatch(inbox: Inbox) -> None:
    """Stop reporting ``inbox`` (it is closed)."""
    with _lock:
        if _watched.get(inbox.name) is inbox:
            del _watched[inbox.name]


def read(inboxes: t.Iterable[Inbox] | None = None) -> Iterator[tuple[str, dict[str, float]]]:
    """Each inbox's name and gauge readings (default: every inbox watched); an
    inbox that cannot be read now is left out (and logged): a scrape never fails
    for a store that is down."""
    with _lock:
        chosen = list(_watched.values()) if inboxes is None else list(inboxes)
    for inbox in chosen:
        try:
            backlog = inbox.backlog()
        except Exception:  # the store is down: the gauges are missing, which alerts can see
            logger.warning("Backlog of inbox %r not read for metrics", inbox.name, exc_info=True)
            continue
        yield inbox.name, backlog_readings(backlog, inbox.clock.python_now())
