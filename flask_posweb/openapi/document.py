"""The OpenAPI document itself, built with apispec (the ``openapi`` extra).

.. versionadded:: 0.2
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import weakref
from collections.abc import Iterator

from apispec import APISpec
from flask import Flask

from ..auth.credentials import MERCHANT_NAME
from ..calls import CALLS
from ..events import EVENTS
from ..schemas.base import lenient
from ..state import PosWebState
from ..state import get_state
from .operations import error_schemas
from .operations import event_operation
from .operations import loyalty_operation
from .operations import security
from .operations import shared_responses
from .operations import token_operation
from .schemas import SCALARS
from .schemas import Json
from .schemas import SchemaClass
from .schemas import SchemaPlugin
from .schemas import component_names
from .schemas import pair_twins

__all__ = ["openapi_document", "openapi_json", "served_json"]


def _routes(app: Flask, state: PosWebState) -> Iterator[tuple[str, str, str]]:
    """``(path, operation id, endpoint)`` for each rule of the blueprint in the URL
    map, under every prefix it is mounted at (the first mount's ids are the
    endpoints' names)."""
    mounts = state.mounts
    for rule in app.url_map.iter_rules():
        mount, _, endpoint = rule.endpoint.rpartition(".")
        if mount in mounts:
            operation_id = endpoint if mount == mounts[0] else f"{mount}_{endpoint}"
            yield rule.rule, operation_id.replace(".", "_"), endpoint


#: A blueprint mounted per merchant (``/dealpos/<merchant>``): its one path parameter.
MERCHANT_PARAMETER: Json = {
    "name": "merchant",
    "in": "path",
    "required": True,
    "description": "The merchant this URL is for: only its credentials are accepted here.",
    "schema": {"type": "string", "pattern": f"^{MERCHANT_NAME.pattern}$"},
}


def _openapi_path(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path: ``<merchant>`` is ``{merchant}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _version() -> str:
    try:
        return importlib.metadata.version("Flask-PosWeb")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "0"


def openapi_document(app: Flask, *, server_url: str | None = None) -> Json:
    """The OpenAPI 3.1 description of ``app``'s DealPOS endpoints: events, loyalty
    calls and the OAuth token URL, with the security schemes of its settings.

    :param server_url: the app's public URL (``https://shop.example.com``), written as
        the document's server and in the OAuth token URL; without it, both are
        relative to the host.

    .. versionadded:: 0.2
    """
    state = get_state(app)
    settings = state.settings
    twins: dict[SchemaClass, SchemaClass] = {}
    bodies: dict[str, tuple[SchemaClass, bool]] = {}
    for event in EVENTS.values():
        enforced = event.exact_marks or settings.strict_presence
        schema = event.schema if enforced else lenient(event.schema)
        if not enforced:
            pair_twins(schema, event.schema, twins)
        bodies[event.name] = (schema, enforced)
    calls = {call.endpoint: call for call in CALLS.values()}
    roots = [schema for schema, _ in bodies.values()]
    for call in calls.values():
        roots += [call.request_schema, *call.answer_schemas.values()]

    base = (server_url or "").rstrip("/")
    routes = list(_routes(app, state))
    token_url = next(
        (base + _openapi_path(path) for path, _, name in routes if name == "oauth_token"), None
    )
    schemes, requirement = security(state, token_url if state.tokens is not None else None)
    spec = APISpec(
        title="DealPOS webhooks",
        version=_version(),
        openapi_version="3.1.0",
        plugins=[SchemaPlugin(component_names(roots, twins), twins)],
        info={"description": _summary(settings.strict_presence, requirement)},
        **({"servers": [{"url": base or "/"}]} if server_url is not None else {}),
        **({"security": requirement} if requirement else {}),
    )
    for name, component in {**SCALARS, **error_schemas()}.items():
        spec.components.schema(name, component)
    for name, component in shared_responses(state).items():
        spec.components.response(name, component)
    for name, component in schemes.items():
        spec.components.security_scheme(name, component)

    tags: list[str] = []
    for path, operation_id, endpoint in routes:
        if endpoint in bodies:
            operation = event_operation(EVENTS[endpoint], *bodies[endpoint], state)
        elif endpoint in calls:
            operation = loyalty_operation(calls[endpoint], state)
        elif endpoint == "oauth_token" and state.tokens is not None:
            operation = token_operation(state)
        else:  # the document itself; the token URL when OAuth is off (it answers 404)
            continue
        tags += [tag for tag in operation["tags"] if tag not in tags]
        spec.path(
            path=_openapi_path(path),
            operations={"post": {"operationId": operation_id, **operation}},
            parameters=[MERCHANT_PARAMETER] if "<merchant>" in path else [],
        )
    for tag in tags:
        spec.tag({"name": tag})
    document = spec.to_dict()
    # In the order a reader looks for them.
    first = ("openapi", "info", "servers", "security", "tags", "paths")
    return {**{key: document[key] for key in first if key in document}, **document}


def _summary(strict_presence: bool, requirement: list[Json]) -> str:
    presence = (
        "every event (`POSWEB_STRICT_PRESENCE`)"
        if strict_presence
        else "Invoice Payment events; elsewhere DealPOS's marks are listed in "
        "`x-dealpos-required` and a body lacking them is accepted"
    )
    auth = "" if requirement else " This app accepts webhooks without credentials."
    return (
        "DealPOS's webhooks and External Loyalty App calls as this app receives them, "
        "generated by Flask-PosWeb from the schemas that validate each body. Unknown "
        f"fields are always allowed. Presence is enforced for the loyalty calls and "
        f"{presence}.{auth}"
    )


def openapi_json(app: Flask, *, server_url: str | None = None) -> str:
    """:func:`openapi_document` as JSON text.

    .. versionadded:: 0.2
    """
    return json.dumps(openapi_document(app, server_url=server_url), indent=2) + "\n"


_SERVED: weakref.WeakKeyDictionary[Flask, tuple[str, bytes]] = weakref.WeakKeyDictionary()


def served_json(app: Flask, script_root: str = "") -> bytes:
    """The document served at ``<prefix>/openapi.json``: built once, then kept.

    Nothing in it comes from the request's ``Host`` header, so no caller can make
    the app serve others a document naming another host. The server URL is the
    app's script root (WSGI ``SCRIPT_NAME``, set by the server), so that paths
    resolve where the app is mounted under a path.
    """
    kept = _SERVED.get(app)
    if kept is None or kept[0] != script_root:
        kept = (script_root, openapi_json(app, server_url=script_root or None).encode())
        _SERVED[app] = kept
    return kept[1]
