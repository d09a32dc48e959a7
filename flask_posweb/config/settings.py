"""An app's ``POSWEB_*`` configuration, checked once and typed: :func:`read_settings`.

Plain values only (seconds for durations, tuples of secrets): the app's
state builds what runs from them (see :mod:`flask_posweb.state`).

.. versionadded:: 0.1
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import datetime as dt
import importlib.util
import re
import typing as t
import warnings

from werkzeug.utils import ImportStringError
from werkzeug.utils import import_string

from ..auth.credentials import Lookup
from ..exceptions import ConfigurationError
from ..exceptions import InsecureWebhookWarning
from ..headers import SECRET_HEADERS
from ..inbox.records import Retention
from . import checks

__all__ = ["DashboardSettings", "Dispatch", "Settings", "read_settings"]

Dispatch = t.Literal["inline", "thread", "worker", "celery"]
Metrics = t.Literal["opentelemetry", "prometheus"]

#: The package each metrics backend needs, and its extra.
_METRICS_PACKAGES: dict[str, tuple[str, str]] = {
    "opentelemetry": ("opentelemetry", "otel"),
    "prometheus": ("prometheus_client", "prometheus"),
}

#: Slash-separated segments of unreserved URL characters: ``/log``, ``/ops/deliveries``.
_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")

#: Decides whether the current request may see the log page (see ``POSWEB_DASHBOARD_ACCESS``).
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


@dataclasses.dataclass(frozen=True)
class Settings:
    """The ``POSWEB_*`` configuration of one app, checked and typed (seconds for durations).

    Built once when the extension is set up on an app (see :func:`read_settings`).
    """

    #: The app's own credentials (every secret at least 16 characters).
    api_keys: tuple[str, ...]
    basic_auth: dict[str, tuple[str, ...]]
    oauth_clients: dict[str, tuple[str, ...]]
    #: Keys that sign access tokens, newest last; ``()`` when OAuth is off.
    signing_keys: tuple[str | bytes, ...]
    token_ttl: float
    token_audience: str | None
    token_rate_limit: str
    #: The host's lookup of merchants' credentials (``POSWEB_CREDENTIALS`` or
    #: ``@posweb.credentials``), and how long its answers are kept.
    credentials: Lookup | None
    credentials_ttl: float
    merchant_rate_limit: str | None
    #: ``POSWEB_NO_AUTH``: accept webhooks without credentials (development only).
    no_auth: bool
    api_key_header: str
    #: Headers never kept with a delivery: the usual credentials and the API key's.
    hidden_headers: frozenset[str]
    max_content_length: int
    #: Bounds of the request headers (every endpoint that may store a body).
    max_headers: int
    max_header_bytes: int
    strict_presence: bool
    #: Serve the OpenAPI description (``POSWEB_OPENAPI``).
    openapi: bool
    #: Serve the health URL (``POSWEB_HEALTH``).
    health: bool
    inbox: bool
    #: ``None``: a private temporary inbox (``TESTING``).
    database_url: str | None
    inbox_name: str
    database_timeout: float
    duplicate_window: float
    dispatch: Dispatch
    max_attempts: int
    retry_backoff: float
    retry_max_delay: float
    lease: float
    stranded_after: float
    poll_interval: float
    retry_after: int
    retention: Retention
    celery_publish_timeout: float
    celery_requeue_after: float
    celery_relay: bool
    loyalty_time_budget: float
    #: The delivery log page; ``None`` when it is off.
    dashboard: DashboardSettings | None
    #: Where metrics go (``POSWEB_METRICS``): ``opentelemetry``, ``prometheus``.
    metrics: tuple[Metrics, ...]
    #: Below the prefix, where the Prometheus exposition is served; ``None``: not served.
    metrics_path: str | None
    #: Merchants with a label value of their own; 0: no merchant label.
    metrics_merchants: int
    testing: bool

    @property
    def oauth(self) -> bool:
        """Whether the token URL issues tokens."""
        return bool(self.signing_keys)


def read_settings(
    config: c.Mapping[str, t.Any], instance_path: str, *, credentials: Lookup | None = None
) -> Settings:
    """Check an app's configuration and build its :class:`Settings`.

    :param credentials: the lookup registered with ``@posweb.credentials``, if any.
    :raises ConfigurationError: saying which key to set, and how.
    """
    checks.warn_unknown(config)
    dispatch = config["POSWEB_DISPATCH"]
    if dispatch not in t.get_args(Dispatch):
        raise ConfigurationError(
            f"POSWEB_DISPATCH must be 'inline', 'thread', 'worker' or 'celery', not {dispatch!r}."
        )
    testing = bool(config.get("TESTING"))
    inbox = bool(config["POSWEB_INBOX"])
    api_keys = _api_keys(config)
    basic_auth = checks.pairs(config, "POSWEB_BASIC_AUTH")
    oauth_clients = checks.pairs(config, "POSWEB_OAUTH_CLIENTS")
    lookup = _lookup(config, credentials)
    no_auth = _no_auth(config, bool(api_keys or basic_auth or oauth_clients or lookup))
    # The merchants' OAuth clients need a signing key said outright: SECRET_KEY
    # alone (an app's sessions) does not open a token URL.
    oauth = bool(oauth_clients) or bool(lookup and config["POSWEB_OAUTH_SIGNING_KEY"])
    return Settings(
        api_keys=api_keys,
        basic_auth=basic_auth,
        oauth_clients=oauth_clients,
        signing_keys=_signing_keys(config) if oauth else (),
        token_ttl=checks.duration(config, "POSWEB_TOKEN_TTL"),
        token_audience=config["POSWEB_TOKEN_AUDIENCE"],
        token_rate_limit=config["POSWEB_TOKEN_RATE_LIMIT"],
        credentials=lookup,
        credentials_ttl=checks.duration(config, "POSWEB_CREDENTIALS_TTL", zero=True),
        merchant_rate_limit=_rate_limit(config, "POSWEB_MERCHANT_RATE_LIMIT"),
        no_auth=no_auth,
        api_key_header=config["POSWEB_API_KEY_HEADER"],
        hidden_headers=SECRET_HEADERS | {config["POSWEB_API_KEY_HEADER"].lower()},
        max_content_length=int(checks.number(config, "POSWEB_MAX_CONTENT_LENGTH")),
        max_headers=int(checks.number(config, "POSWEB_MAX_HEADERS")),
        max_header_bytes=int(checks.number(config, "POSWEB_MAX_HEADER_BYTES")),
        strict_presence=bool(config["POSWEB_STRICT_PRESENCE"]),
        openapi=_openapi(config),
        health=checks.flag(config, "POSWEB_HEALTH"),
        inbox=inbox,
        database_url=(
            checks.database_url(config["POSWEB_DATABASE_URL"], instance_path, testing)
            if inbox
            else None
        ),
        inbox_name=_inbox_name(config["POSWEB_INBOX_NAME"]),
        database_timeout=checks.duration(config, "POSWEB_DATABASE_TIMEOUT"),
        duplicate_window=checks.duration(config, "POSWEB_DUPLICATE_WINDOW"),
        dispatch=dispatch,
        max_attempts=int(checks.number(config, "POSWEB_MAX_ATTEMPTS")),
        # A zero backoff makes retries immediate: for tests only.
        retry_backoff=checks.duration(config, "POSWEB_RETRY_BACKOFF", zero=testing),
        retry_max_delay=checks.duration(config, "POSWEB_RETRY_MAX_DELAY", zero=testing),
        lease=checks.duration(config, "POSWEB_LEASE"),
        stranded_after=checks.duration(config, "POSWEB_STRANDED_AFTER"),
        poll_interval=checks.duration(config, "POSWEB_POLL_INTERVAL"),
        retry_after=max(1, round(checks.duration(config, "POSWEB_RETRY_AFTER"))),
        retention=Retention(
            processed=checks.duration(config, "POSWEB_RETENTION"),
            dead=checks.duration(config, "POSWEB_DEAD_RETENTION"),
            rejected=checks.duration(config, "POSWEB_REJECTED_MAX_AGE"),
            rejected_max_count=int(checks.number(config, "POSWEB_REJECTED_MAX_COUNT")),
            answers=checks.duration(config, "POSWEB_LOYALTY_RETENTION"),
        ),
        celery_publish_timeout=checks.duration(config, "POSWEB_CELERY_PUBLISH_TIMEOUT"),
        celery_requeue_after=checks.duration(config, "POSWEB_CELERY_REQUEUE_AFTER"),
        celery_relay=bool(config["POSWEB_CELERY_RELAY"]),
        loyalty_time_budget=checks.duration(config, "POSWEB_LOYALTY_TIME_BUDGET"),
        dashboard=_dashboard(config, inbox=inbox),
        **_metrics(config),
        testing=testing,
    )


def _metrics(config: c.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The metrics settings; fail at setup when a backend's package is missing."""
    backends = tuple(dict.fromkeys(checks.strings("POSWEB_METRICS", config["POSWEB_METRICS"])))
    for backend in backends:
        if backend not in _METRICS_PACKAGES:
            raise ConfigurationError(
                f"POSWEB_METRICS knows 'opentelemetry' and 'prometheus', not {backend!r}."
            )
        package, extra = _METRICS_PACKAGES[backend]
        if importlib.util.find_spec(package) is None:
            raise ConfigurationError(
                f"POSWEB_METRICS = [{backend!r}] needs {package}: "
                f"pip install 'Flask-PosWeb[{extra}]'."
            )
    path = config["POSWEB_METRICS_PATH"]
    if path is not None:
        if not isinstance(path, str) or not _PATH.fullmatch(path.rstrip("/")):
            raise ConfigurationError(
                f"POSWEB_METRICS_PATH must be a path below the prefix such as '/metrics', "
                f"not {path!r}."
            )
        if "prometheus" not in backends:
            raise ConfigurationError(
                "POSWEB_METRICS_PATH serves the Prometheus metrics: add 'prometheus' to "
                "POSWEB_METRICS."
            )
        path = path.rstrip("/")
    merchants = config["POSWEB_METRICS_MERCHANTS"]
    if isinstance(merchants, bool) or not isinstance(merchants, int) or merchants < 0:
        raise ConfigurationError(
            f"POSWEB_METRICS_MERCHANTS must be a number of merchants (0: no merchant "
            f"label), not {merchants!r}."
        )
    return {"metrics": backends, "metrics_path": path, "metrics_merchants": merchants}


def _openapi(config: c.Mapping[str, t.Any]) -> bool:
    """Fail at setup, not at the first request for the document."""
    enabled = bool(config["POSWEB_OPENAPI"])
    if enabled and importlib.util.find_spec("apispec") is None:
        raise ConfigurationError(
            "POSWEB_OPENAPI needs apispec: pip install 'Flask-PosWeb[openapi]'."
        )
    return enabled


def _inbox_name(value: t.Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise ConfigurationError(
            f"POSWEB_INBOX_NAME must be a string of 1 to 64 characters, not {value!r}."
        )
    return value


def _api_keys(config: c.Mapping[str, t.Any]) -> tuple[str, ...]:
    keys = checks.strings("POSWEB_API_KEYS", config["POSWEB_API_KEYS"])
    if "POSWEB_API_KEY" in config and not keys:
        raise ConfigurationError(
            "POSWEB_API_KEY is not a setting: put the key in POSWEB_API_KEYS "
            "(a list, for rotation)."
        )
    checks.strong("POSWEB_API_KEYS", keys)
    return tuple(keys)


def _lookup(config: c.Mapping[str, t.Any], registered: Lookup | None) -> Lookup | None:
    """The credentials lookup: ``POSWEB_CREDENTIALS`` (a callable, or where to
    import it from) or the one ``@posweb.credentials`` registered; not both."""
    value = config["POSWEB_CREDENTIALS"]
    if value is not None and registered is not None:
        raise ConfigurationError(
            "POSWEB_CREDENTIALS is set and @posweb.credentials registered a lookup: keep one."
        )
    if isinstance(value, str):
        try:
            value = import_string(value)  # "package.module:name" or "package.module.name"
        except ImportStringError as exc:
            raise ConfigurationError(
                f"POSWEB_CREDENTIALS: cannot import {config['POSWEB_CREDENTIALS']!r} "
                f"({exc.exception}); give 'package.module:function'."
            ) from None
    if value is not None and not callable(value):
        raise ConfigurationError(
            f"POSWEB_CREDENTIALS must be a function taking a CredentialQuery, not {value!r}."
        )
    return t.cast("Lookup | None", value) or registered


def _rate_limit(config: c.Mapping[str, t.Any], key: str) -> str | None:
    value = config[key]
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigurationError(f"{key} must be a limit such as '50 per second', not {value!r}.")
    return value


def _signing_keys(config: c.Mapping[str, t.Any]) -> tuple[str | bytes, ...]:
    keys = config["POSWEB_OAUTH_SIGNING_KEY"] or config.get("SECRET_KEY")
    if not keys:
        raise ConfigurationError(
            "POSWEB_OAUTH_CLIENTS needs a signing key: set POSWEB_OAUTH_SIGNING_KEY or SECRET_KEY."
        )
    return (keys,) if isinstance(keys, (str, bytes)) else tuple(keys)


def _no_auth(config: c.Mapping[str, t.Any], credentials: bool) -> bool:
    """Fail closed: credentials, or an explicit (and loud) opt-out."""
    if config["POSWEB_NO_AUTH"]:
        if credentials:
            raise ConfigurationError(
                "POSWEB_NO_AUTH is set together with credentials; remove one or the other."
            )
        warnings.warn(
            "POSWEB_NO_AUTH is set: anyone who can reach the webhook URLs can post events.",
            InsecureWebhookWarning,
            stacklevel=4,
        )
        return True
    if not credentials:
        raise ConfigurationError(
            "Flask-PosWeb accepts no webhook without credentials: set POSWEB_API_KEYS, "
            "POSWEB_BASIC_AUTH, POSWEB_OAUTH_CLIENTS or a credentials lookup "
            "(POSWEB_CREDENTIALS, @posweb.credentials), or POSWEB_NO_AUTH = True for "
            "local development only."
        )
    return False


def _dashboard(config: c.Mapping[str, t.Any], *, inbox: bool) -> DashboardSettings | None:
    """The log page's settings, or ``None`` when ``POSWEB_DASHBOARD`` is off.

    Fails closed: the page is refused a start without an access check, the
    inbox it shows or a secret key for its forms' CSRF tokens.
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
    return DashboardSettings(
        access=access,
        path=path.rstrip("/"),
        timezone=checks.timezone("POSWEB_DASHBOARD_TIMEZONE", config["POSWEB_DASHBOARD_TIMEZONE"]),
        search_range=checks.duration(config, "POSWEB_DASHBOARD_SEARCH_RANGE"),
    )
