"""Flask-PosWeb: DealPOS webhooks for Flask, one validated endpoint per event."""

from __future__ import annotations

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
from .inbox import Inbox

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
