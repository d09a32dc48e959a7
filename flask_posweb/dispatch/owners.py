"""Who holds a lease: an id that names the host, the process and the kind of dispatcher.

.. versionadded:: 0.3
    (0.2 kept it in ``runner.py``.)
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["new_owner"]


def new_owner(kind: str) -> str:
    """A lease owner id that says who holds a delivery: ``kind@host:pid:random``."""
    return f"{kind}@{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
