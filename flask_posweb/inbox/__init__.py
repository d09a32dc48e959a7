"""The durable inbox: stored deliveries, their statuses, and how they are written.

.. versionadded:: 0.1
"""

from __future__ import annotations

from .records import Admission
from .records import Attempt
from .records import Delivery
from .records import ReceiverSet
from .records import utcnow
from .states import DISPATCHABLE
from .states import STATUSES
from .states import TERMINAL
from .states import Status
from .store import Filter
from .store import Inbox
from .store import Retention
from .writer import Deadline

__all__ = [
    "DISPATCHABLE",
    "STATUSES",
    "TERMINAL",
    "Admission",
    "Attempt",
    "Deadline",
    "Delivery",
    "Filter",
    "Inbox",
    "ReceiverSet",
    "Retention",
    "Status",
    "utcnow",
]
