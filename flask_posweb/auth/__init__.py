"""Who may post: pure credential checks and stateless tokens (no Flask request inside).

.. versionadded:: 0.2
"""

from __future__ import annotations

from .credentials import CachedLookup
from .credentials import CredentialQuery
from .credentials import Credentials
from .credentials import Lookup
from .credentials import StaticCredentials
from .secrets import hashed

__all__ = [
    "CachedLookup",
    "CredentialQuery",
    "Credentials",
    "Lookup",
    "StaticCredentials",
    "hashed",
]
