"""The log page's ``POSWEB_DASHBOARD*`` settings, checked at setup.

Kept apart from :mod:`.views` so that reading the configuration never imports
the page's optional dependencies (Flask-WTF).

.. versionadded:: 0.2
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import datetime as dt
import re
import typing as t
import zoneinfo

from ..durations import to_seconds
from ..exceptions import ConfigurationError

__all__ = ["DashboardSettings", "read_dashboard_settings"]

#: Slash-separated segments of unreserved URL characters: ``/log``, ``/ops/deliveries``.
_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")

#: Decides whether the current request may see the page (see ``POSWEB_DASHBOARD_ACCESS``).
AccessCheck = c.Callable[[], t.Any]


@dataclasses.dataclass(frozen=True)
class DashboardSettings:
    """How the delivery log page is served (present only when it is on).

    .. versionadded:: 0.2
    """

    access: AccessCheck
    #: Below the blueprint's prefix, without a trailing slash.
    path: str
    timezone: dt.tzinfo
    #: Longest received-time range a text search may scan, in seconds.
    search_range: float


def read_dashboard_settings(
    config: c.Mapping[str, t.Any], *, inbox: bool
) -> DashboardSettings | None:
    """The log page's settings, or ``None`` when ``POSWEB_DASHBOARD`` is off.

    Fails closed: the page is refused a start without an access check, the
    inbox it shows or a secret key for its forms' CSRF tokens.

    :raises ConfigurationError: saying which key to set, and how.
    """
    if not config["POSWEB_DASHBOARD"]:
        return None
    access = config["POSWEB_DASHBOARD_ACCESS"]
    if access is None or not callable(access):
        raise ConfigurationError(
            "POSWEB_DASHBOARD shows every delivery: set POSWEB_DASHBOARD_ACCESS to a callable "
            "that says whether the current request may see it, e.g. "
            "lambda: current_user.is_authenticated and current_user.is_admin."
        )
    if not inbox:
        raise ConfigurationError("POSWEB_DASHBOARD shows the inbox: set POSWEB_INBOX = True.")
    # Flask-WTF keeps the token in the session, which needs SECRET_KEY even
    # when WTF_CSRF_SECRET_KEY signs the tokens.
    if not config.get("SECRET_KEY"):
        raise ConfigurationError(
            "POSWEB_DASHBOARD protects its forms with CSRF tokens kept in the session, "
            "which needs SECRET_KEY (WTF_CSRF_SECRET_KEY alone is not enough)."
        )
    path = config["POSWEB_DASHBOARD_PATH"]
    if not isinstance(path, str) or not _PATH.fullmatch(path.rstrip("/")):
        raise ConfigurationError(
            f"POSWEB_DASHBOARD_PATH must be a path below the prefix such as '/log', not {path!r}."
        )
    try:
        search_range = to_seconds(config["POSWEB_DASHBOARD_SEARCH_RANGE"])
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"POSWEB_DASHBOARD_SEARCH_RANGE: {exc}") from None
    if search_range <= 0:
        raise ConfigurationError("POSWEB_DASHBOARD_SEARCH_RANGE must be a positive duration.")
    return DashboardSettings(
        access=access,
        path=path.rstrip("/"),
        timezone=_timezone(config["POSWEB_DASHBOARD_TIMEZONE"]),
        search_range=search_range,
    )


def _timezone(value: t.Any) -> dt.tzinfo:
    if isinstance(value, dt.tzinfo):
        return value
    if value == "UTC":  # needs no time zone database
        return dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, TypeError, ValueError):
        raise ConfigurationError(
            f"POSWEB_DASHBOARD_TIMEZONE must be a time zone name such as 'Asia/Jakarta' "
            f"(or a tzinfo), not {value!r}."
        ) from None
