"""The URLs an app serves DealPOS: one place for which of them are worth giving
to DealPOS, used by ``flask posweb events`` and by the 404 that suggests the
URL a typo meant.

Every event has a URL. A loyalty call's URL answers ``501`` until the app has
a provider for it, and the token URL ``404`` until OAuth clients are set:
neither is listed nor suggested before then.

.. versionadded:: 0.2
"""

from __future__ import annotations

import dataclasses
import difflib
import typing as t

from ..calls import CALLS
from ..events import EVENTS
from ..state import PosWebState

__all__ = ["TOKEN_URL", "Route", "nearest_route", "served_routes"]

#: The OAuth token URL, below the blueprint's prefix.
TOKEN_URL = "/oauth/token"


@dataclasses.dataclass(frozen=True)
class Route:
    """One URL DealPOS may be given."""

    #: ``"event"``, ``"loyalty"`` or ``"oauth"``.
    kind: t.Literal["event", "loyalty", "oauth"]
    #: The blueprint's endpoint (``payment_created``, ``loyalty_member_points``).
    endpoint: str
    #: The URL below the blueprint's prefix (``/payment-created``).
    rule: str
    #: What it is, for people (``Payment Created``).
    title: str


def served_routes(state: PosWebState) -> list[Route]:
    """The URLs this app answers, in catalogue order: every event, the loyalty
    calls that have a provider, and the token URL when OAuth clients are set."""
    routes = [Route("event", e.name, e.url_rule, e.title) for e in EVENTS.values()]
    providers = state.providers
    routes += [
        Route("loyalty", call.endpoint, call.url_rule, call.title)
        for call in CALLS.values()
        if call.name in providers
    ]
    if state.tokens is not None:
        title = "OAuth token URL (DealPOS's ServerAuthenticationURL)"
        routes.append(Route("oauth", "oauth_token", TOKEN_URL, title))
    return routes


def nearest_route(state: PosWebState, path: str) -> str | None:
    """The served URL that ``path`` most likely meant: the same but for case,
    ``_`` for ``-`` or a trailing slash (what a hand-copied URL gets wrong), else
    the closest spelling; ``None`` when none is close.

    Only the part below the blueprint's prefix is compared: a long prefix that
    every URL shares would make any two of them look alike.
    """

    def plain(url: str) -> str:
        return url.lower().replace("_", "-").rstrip("/")

    prefix = max(
        (p.rstrip("/") for p in state.prefixes() if plain(path).startswith(plain(p) + "/")),
        key=len,
        default=None,
    )
    if prefix is None:
        return None
    rest = plain(path[len(prefix) :])
    rules = {plain(route.rule): route.rule for route in served_routes(state)}
    if rest in rules:
        return prefix + rules[rest]
    close = difflib.get_close_matches(rest, list(rules), n=1, cutoff=0.85)
    return prefix + rules[close[0]] if close else None
