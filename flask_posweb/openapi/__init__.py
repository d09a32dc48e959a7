"""The OpenAPI 3.1 description of an app's DealPOS endpoints: ``flask posweb
openapi``, and ``<prefix>/openapi.json`` when ``POSWEB_OPENAPI`` is on.

One source of truth: each request body is described by converting, with
apispec, the very marshmallow schema that loads it (see :mod:`.schemas`): the
strict schema where presence is enforced (Invoice Payment always, every event
with ``POSWEB_STRICT_PRESENCE``, the loyalty calls), else its lenient twin,
with DealPOS's marks as ``x-dealpos-required``. A body the document accepts is
accepted by the library, but for numbers beyond what JSON Schema can bound (more
than 30 significant digits); the library also takes money and counts written as
numeric strings, which the document leaves out (DealPOS sends numbers). Paths
come from the app's URL map, security schemes and answers from its settings.

apispec (the ``openapi`` extra) is imported only when a document is built:
the functions below are loaded on first use.

.. versionadded:: 0.2
"""

from __future__ import annotations

import importlib
import typing as t

if t.TYPE_CHECKING:
    from .document import openapi_document
    from .document import openapi_json
    from .document import served_json

__all__ = ["openapi_document", "openapi_json", "served_json"]


def __getattr__(name: str) -> t.Any:
    # PEP 562: apispec only when a document is asked for.
    if name in __all__:
        return getattr(importlib.import_module(".document", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
