"""``GET <prefix>/health``: the store's health for load balancers and probes,
when ``POSWEB_HEALTH`` is on.

The view only answers: the checks and the rule of what is healthy are
:func:`~flask_posweb.inbox.health.check_health`'s, which ``flask posweb
check`` runs too. The URL is below the prefix's fixed part, so that one URL
serves a blueprint mounted per merchant (``/dealpos/health`` for
``/dealpos/<merchant>``): a load balancer knows no merchant.

It is a route of the app like any other: a probe's request goes through the
app's request path, and so starts the background dispatcher of a process
that has served nothing yet (see :ref:`background-thread`).

.. versionadded:: 0.3
"""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import jsonify
from flask import request
from flask.blueprints import BlueprintSetupState

from ..exceptions import NotFoundError
from ..inbox.health import check_health
from ..state import get_state
from .throttle import exempt_from_app_limits

__all__ = ["HEALTH_URL", "health", "register_health"]

#: Where the health answer is, below the fixed part of the blueprint's prefix.
HEALTH_URL = "/health"


def health() -> Response:
    """``GET <prefix>/health``: 200 when the store can take deliveries, else
    503 with ``Retry-After`` and a reason per failed check; a 404 while
    ``POSWEB_HEALTH`` is off, as for any unknown path.

    No credentials, by choice: probes send none, and the answer holds figures
    only (counts, a revision, times), never a body, a secret, nor the
    driver's words (which may name the database's host): those go to the log
    and to ``flask posweb check``. Restrict it by network if even the figures
    are private.
    """
    state = get_state()
    if not state.settings.health:
        raise NotFoundError(request.path)
    report = check_health(state.inbox)
    response = jsonify(report.as_json())
    # A probe's answer is about now: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    if not report.healthy:
        response.status_code = 503
        response.headers["Retry-After"] = str(state.settings.retry_after)
    return response


def _mount(setup: BlueprintSetupState) -> None:
    """Add the URL for one registration of the blueprint, below its prefix's
    fixed part, under the blueprint's endpoint name (``posweb.health``): its
    JSON error handlers answer there, as below the prefix."""
    base = (setup.url_prefix or "").partition("<")[0].rstrip("/")
    endpoint = f"{setup.name_prefix}.{setup.name}.health".lstrip(".")
    setup.app.add_url_rule(
        base + HEALTH_URL,
        endpoint,
        health,
        methods=["GET"],
        provide_automatic_options=False,
    )
    exempt_from_app_limits(t.cast(Flask, setup.app), health)


def register_health(bp: Blueprint) -> None:
    """Add the health URL to every registration of ``bp``."""
    bp.record(_mount)
