"""Configuration: every ``POSWEB_*`` key with its default (:data:`DEFAULTS`), and
the checks that turn an app's config into its :class:`Settings`.

.. versionadded:: 0.1
"""

from __future__ import annotations

from .defaults import DEFAULTS
from .defaults import MIN_SECRET_LENGTH
from .defaults import RETENTION_KEYS
from .settings import DashboardSettings
from .settings import Dispatch
from .settings import Settings
from .settings import read_settings

__all__ = [
    "DEFAULTS",
    "MIN_SECRET_LENGTH",
    "RETENTION_KEYS",
    "DashboardSettings",
    "Dispatch",
    "Settings",
    "read_settings",
]
