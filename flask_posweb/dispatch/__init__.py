"""Running receivers for stored deliveries, in whichever process dispatches them.

:func:`dispatch_delivery` is the one entry point for any task engine (Celery,
RQ, Dramatiq...): hand it a delivery id, it takes the delivery's lease, runs
the receivers in the app context and records the outcome. A duplicate call is
harmless: the second finds the lease held, or the delivery finished.

.. versionadded:: 0.2
"""

from __future__ import annotations

from .dispatcher import dispatch_delivery
from .dispatcher import replay

__all__ = ["dispatch_delivery", "replay"]
