"""The durable inbox: stored deliveries, their statuses, and how they are written.

The plain values (records, statuses, filters, deadlines) import nothing
heavy; the store itself (:class:`Inbox`, SQLAlchemy and Alembic behind it) is
loaded on first use, so that an app without an inbox never imports them.

.. versionadded:: 0.1
"""

from __future__ import annotations

import importlib
import typing as t

from .deadline import Deadline
from .filters import Filter
from .records import MAX_ID
from .records import Admission
from .records import Attempt
from .records import Backlog
from .records import Delivery
from .records import MerchantSummary
from .records import ReceiverSet
from .records import Retention
from .records import Stranding
from .records import utcnow
from .states import DISPATCHABLE
from .states import STATUSES
from .states import TERMINAL
from .states import Status

if t.TYPE_CHECKING:
    from .store import Inbox

__all__ = [
    "DISPATCHABLE",
    "MAX_ID",
    "STATUSES",
    "TERMINAL",
    "Admission",
    "Attempt",
    "Backlog",
    "Deadline",
    "Delivery",
    "Filter",
    "Inbox",
    "MerchantSummary",
    "ReceiverSet",
    "Retention",
    "Status",
    "Stranding",
    "utcnow",
]


def __getattr__(name: str) -> t.Any:
    # PEP 562: the store (and SQLAlchemy with it) only when asked for.
    if name == "Inbox":
        return importlib.import_module(".store", __name__).Inbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
