"""Flask-PosWeb: DealPOS webhooks for Flask, one validated endpoint per event."""

from __future__ import annotations

import importlib
import typing as t

from .dispatch import dispatch_delivery
from .events import EVENTS
from .events import EventType
from .events import WebhookEvent
from .events import get_event_type
from .exceptions import ConfigurationError
from .exceptions import InsecureWebhookWarning
from .exceptions import PosWebError
from .exceptions import PosWebWarning
from .exceptions import StoreError
from .exceptions import UnknownEventError
from .exceptions import WebhookError
from .extension import PosWeb
from .inbox import Delivery
from .inbox import Filter

if t.TYPE_CHECKING:
    from .inbox.store import Inbox

__all__ = [
    "EVENTS",
    "ConfigurationError",
    "Delivery",
    "EventType",
    "Filter",
    "Inbox",
    "InsecureWebhookWarning",
    "PosWeb",
    "PosWebError",
    "PosWebWarning",
    "StoreError",
    "UnknownEventError",
    "WebhookError",
    "WebhookEvent",
    "dispatch_delivery",
    "get_event_type",
]


def __getattr__(name: str) -> t.Any:
    # PEP 562: the store (SQLAlchemy, Alembic) only for an app that has an inbox.
    if name == "Inbox":
        return importlib.import_module(".inbox.store", __name__).Inbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
