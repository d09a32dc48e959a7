"""The delivery log page: every delivery, for the people who look for a missing payment.

An HTML page inside the host app, off by default (``POSWEB_DASHBOARD``) and
fail-closed: it needs an access check, and refuses a request the check does
not admit. Its forms (replay) carry CSRF tokens checked in its own views only:
the library never turns CSRF on app-wide, which would refuse DealPOS's POSTs.

Only :func:`register_dashboard` imports the page's views, and with them its
optional dependency (Flask-WTF, the ``dashboard`` extra).

.. versionadded:: 0.2
"""

from __future__ import annotations

from ..exceptions import ConfigurationError
from ..state import PosWebState

__all__ = ["register_dashboard"]


def register_dashboard(state: PosWebState, prefix: str) -> str:
    """Register the log page's blueprint on ``state.app`` below ``prefix``.

    A URL below it that matches no route gets the host's HTML 404, not the
    webhooks' JSON (see :func:`~flask_posweb.web.views.answers_for`).

    :returns: where the page is mounted.
    :raises ConfigurationError: the ``dashboard`` extra is missing, or a URL of
        the app is already there.
    """
    settings = state.settings.dashboard
    assert settings is not None
    try:
        from .views import create_dashboard
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"POSWEB_DASHBOARD needs {exc.name}: pip install 'Flask-PosWeb[dashboard]'."
        ) from None
    mount = prefix.rstrip("/") + settings.path
    for rule in state.app.url_map.iter_rules():
        if rule.rule == mount or rule.rule.startswith(mount + "/"):
            raise ConfigurationError(
                f"POSWEB_DASHBOARD_PATH: {rule.rule!r} is already a URL of this app; "
                "choose another path for the log page."
            )
    state.app.register_blueprint(create_dashboard(), url_prefix=mount)
    return mount
