"""Every ``POSWEB_*`` configuration key with its default, and the checks.

This mapping is the single source for the code, the docs' table and the
tests. Keys are read once, when the blueprint is registered on an app; set them
in ``app.config`` before ``register_blueprint`` / ``init_app``.

Durations take a number of seconds, a :class:`~datetime.timedelta` or a
string such as ``"90s"``, ``"10m"``, ``"12h"``, ``"30d"``; the retention keys
refuse a bare number (is ``30`` seconds or days?).

.. versionadded:: 0.1
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import difflib
import importlib.util
import os
import typing as t
import warnings

import sqlalchemy as sa

from .auth.tokens import TokenAuthority
from .auth.verification import ApiKeyVerifier
from .auth.verification import Authenticator
from .auth.verification import BasicVerifier
from .auth.verification import BearerVerifier
from .auth.verification import Verifier
from .dashboard.settings import DashboardSettings
from .dashboard.settings import read_dashboard_settings
from .durations import to_seconds
from .exceptions import ConfigurationError
from .exceptions import InsecureWebhookWarning
from .exceptions import PosWebWarning
from .inbox import Retention
from .web.headers import SECRET_HEADERS

__all__ = ["DEFAULTS", "MIN_SECRET_LENGTH", "Settings", "read_settings"]

#: Every ``POSWEB_*`` key with its default, in the order of the docs' table.
DEFAULTS: dict[str, t.Any] = {
    #: URL prefix used by ``PosWeb.init_app``; ``register_blueprint(url_prefix=...)``
    #: overrides it.
    "POSWEB_URL_PREFIX": "/dealpos",
    #: Accepted API keys (a string or a list, for rotation), sent in the header below.
    #: At least 16 characters each.
    "POSWEB_API_KEYS": [],
    #: Header that carries the API key (DealPOS's OpenAPI file declares ``X-API-Key``).
    "POSWEB_API_KEY_HEADER": "X-API-Key",
    #: HTTP Basic credentials: ``{"user": "password"}`` or a list of pairs.
    #: Passwords of at least 16 characters.
    "POSWEB_BASIC_AUTH": {},
    #: OAuth 2.0 client credentials: ``{"client_id": "secret"}``; a list of secrets
    #: per client allows rotation. Enables the token URL ``<prefix>/oauth/token``.
    "POSWEB_OAUTH_CLIENTS": {},
    #: Key that signs access tokens (a list to rotate: newest last); default ``SECRET_KEY``.
    "POSWEB_OAUTH_SIGNING_KEY": None,
    #: Lifetime of an issued access token (duration).
    "POSWEB_TOKEN_TTL": 3600,
    #: Who tokens are for: a token issued for another audience (a staging host)
    #: is refused. Default: the token URL's own external URL.
    "POSWEB_TOKEN_AUDIENCE": None,
    #: Limit on failed token requests per client address, applied when a
    #: Flask-Limiter ``Limiter`` is registered on the app (its syntax).
    "POSWEB_TOKEN_RATE_LIMIT": "10 per minute",
    #: Accept webhooks with no authentication at all. For local development only;
    #: emits ``InsecureWebhookWarning``.
    "POSWEB_NO_AUTH": False,
    #: Largest accepted body in bytes (DealPOS sends small JSON objects); 413 above.
    "POSWEB_MAX_CONTENT_LENGTH": 1024 * 1024,
    #: Refuse a body lacking fields its documentation marks required even where
    #: the marks are uncertain (every group but Invoice Payment): 422 instead of
    #: accepting it with ``event.missing``.
    "POSWEB_STRICT_PRESENCE": False,
    #: Serve this app's OpenAPI 3.1 description at ``<prefix>/openapi.json``: ``GET``,
    #: without credentials (it describes the endpoints, it receives nothing). Needs
    #: the ``openapi`` extra. ``flask posweb openapi`` writes it either way.
    "POSWEB_OPENAPI": False,
    #: Keep every delivery in the inbox before answering 200. ``False`` runs
    #: receivers in the request and answers 500 when one fails.
    "POSWEB_INBOX": True,
    #: SQLAlchemy URL of the inbox; ``None`` is ``posweb.sqlite3`` in the instance
    #: folder (with ``TESTING`` on: a private temporary file). A relative SQLite
    #: path is relative to the instance folder.
    "POSWEB_DATABASE_URL": None,
    #: Name of this app's inbox: apps sharing one database on purpose keep apart.
    "POSWEB_INBOX_NAME": "default",
    #: The longest a request waits for the store in all (lock included), then 503
    #: (duration).
    "POSWEB_DATABASE_TIMEOUT": 5,
    #: A body equal to an earlier delivery of the event within this window (and
    #: with nothing about the same resource in between) is a duplicate (duration).
    "POSWEB_DUPLICATE_WINDOW": "10m",
    #: Where receivers run: ``"inline"`` (in the request, after the commit),
    #: ``"thread"`` (a background thread in the web process), ``"worker"``
    #: (only in ``flask posweb worker``) or ``"celery"`` (the host's Celery workers).
    "POSWEB_DISPATCH": "inline",
    #: Celery mode: the Celery app; ``None`` is ``app.extensions["celery"]``
    #: (Flask's pattern), looked up when first needed.
    "POSWEB_CELERY_APP": None,
    #: Celery mode: the longest a request waits for the broker to take a task
    #: (duration); past it, the delivery is stored all the same and the relay sends it.
    "POSWEB_CELERY_PUBLISH_TIMEOUT": 1.0,
    #: Celery mode: a due delivery whose task was sent this long ago (lost, or
    #: still queued) and that no worker holds is sent again (duration).
    "POSWEB_CELERY_REQUEUE_AFTER": "1m",
    #: Celery mode: the web processes' background dispatcher relays. ``False``
    #: leaves it to ``flask posweb worker --relay`` or the beat task ``flask_posweb.relay``.
    "POSWEB_CELERY_RELAY": True,
    #: Attempts per delivery before it is ``dead``.
    "POSWEB_MAX_ATTEMPTS": 8,
    #: Delay before the first retry; doubled on each further attempt (duration;
    #: 0 only with ``TESTING``).
    "POSWEB_RETRY_BACKOFF": 30,
    #: Upper bound of the retry delay (duration).
    "POSWEB_RETRY_MAX_DELAY": 3600,
    #: How long a dispatcher owns a delivery; one whose dispatcher died is taken
    #: again once its lease has run out (duration).
    "POSWEB_LEASE": 120,
    #: How often a worker (or the background thread) looks for due deliveries (duration).
    "POSWEB_POLL_INTERVAL": 1.0,
    #: ``Retry-After`` sent with a 503 (duration, whole seconds).
    "POSWEB_RETRY_AFTER": 10,
    #: Processed and unhandled deliveries are deleted this long after they finished
    #: (a timedelta or a string such as ``"30d"``).
    "POSWEB_RETENTION": "30d",
    #: Dead deliveries are deleted this long after they died.
    "POSWEB_DEAD_RETENTION": "90d",
    #: Rejected deliveries kept at most (the oldest go first) ...
    "POSWEB_REJECTED_MAX_COUNT": 10_000,
    #: ... and for at most this long.
    "POSWEB_REJECTED_MAX_AGE": "30d",
    #: Time a loyalty provider may take before DealPOS is answered 503 (it gives up
    #: after 30 s and retries 7 s later) (duration).
    "POSWEB_LOYALTY_TIME_BUDGET": 10,
    #: Remembered order-complete answers (an order is rewarded once) are kept this long.
    "POSWEB_LOYALTY_RETENTION": "90d",
    #: Serve the delivery log page (HTML, for the people who look for a missing
    #: payment) at ``<prefix>`` + ``POSWEB_DASHBOARD_PATH``. Needs
    #: ``POSWEB_DASHBOARD_ACCESS``, ``SECRET_KEY`` (its forms carry CSRF tokens)
    #: and the ``dashboard`` extra (Flask-WTF).
    "POSWEB_DASHBOARD": False,
    #: Who may see the log page: a callable taking no argument, called on each of
    #: its requests, e.g. ``lambda: current_user.is_admin``. A false answer is a
    #: 403; a response it returns (the host's login redirect) is sent instead.
    "POSWEB_DASHBOARD_ACCESS": None,
    #: Where the log page is, below the blueprint's prefix.
    "POSWEB_DASHBOARD_PATH": "/log",
    #: Time zone of the times the log page shows and reads: a name such as
    #: ``"Asia/Jakarta"`` or a ``tzinfo``.
    "POSWEB_DASHBOARD_TIMEZONE": "UTC",
    #: Longest received-time range a text search of the log page may scan: it
    #: reads every body in the range (duration).
    "POSWEB_DASHBOARD_SEARCH_RANGE": "7d",
}

#: Keys whose value must say its unit.
RETENTION_KEYS = (
    "POSWEB_RETENTION",
    "POSWEB_DEAD_RETENTION",
    "POSWEB_REJECTED_MAX_AGE",
    "POSWEB_LOYALTY_RETENTION",
)
#: Shortest secret accepted: API keys, Basic passwords, OAuth client secrets.
MIN_SECRET_LENGTH = 16

Dispatch = t.Literal["inline", "thread", "worker", "celery"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The ``POSWEB_*`` configuration of one app, checked and typed (seconds for durations).

    Built once when the blueprint is registered (see :func:`read_settings`).
    """

    #: ``None`` only with ``POSWEB_NO_AUTH``.
    authenticator: Authenticator | None
    tokens: TokenAuthority | None
    token_audience: str | None
    token_rate_limit: str
    api_key_header: str
    #: Headers never kept with a delivery: the usual credentials and the API key's.
    hidden_headers: frozenset[str]
    max_content_length: int
    strict_presence: bool
    #: Serve the OpenAPI description (``POSWEB_OPENAPI``).
    openapi: bool
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
    poll_interval: float
    retry_after: int
    retention: Retention
    celery_publish_timeout: float
    celery_requeue_after: float
    celery_relay: bool
    loyalty_time_budget: float
    loyalty_retention: float
    #: The delivery log page; ``None`` when it is off.
    dashboard: DashboardSettings | None
    testing: bool


def read_settings(config: c.Mapping[str, t.Any], instance_path: str) -> Settings:
    """Check an app's configuration and build its :class:`Settings`.

    :raises ConfigurationError: saying which key to set, and how.
    """
    _warn_unknown(config)
    dispatch = config["POSWEB_DISPATCH"]
    if dispatch not in t.get_args(Dispatch):
        raise ConfigurationError(
            f"POSWEB_DISPATCH must be 'inline', 'thread', 'worker' or 'celery', not {dispatch!r}."
        )
    testing = bool(config.get("TESTING"))
    tokens = _tokens(config)
    return Settings(
        authenticator=_authenticator(config, tokens),
        tokens=tokens,
        token_audience=config["POSWEB_TOKEN_AUDIENCE"],
        token_rate_limit=config["POSWEB_TOKEN_RATE_LIMIT"],
        api_key_header=config["POSWEB_API_KEY_HEADER"],
        hidden_headers=SECRET_HEADERS | {config["POSWEB_API_KEY_HEADER"].lower()},
        max_content_length=int(_number(config, "POSWEB_MAX_CONTENT_LENGTH")),
        strict_presence=bool(config["POSWEB_STRICT_PRESENCE"]),
        openapi=_openapi(config),
        inbox=bool(config["POSWEB_INBOX"]),
        database_url=_database_url(config["POSWEB_DATABASE_URL"], instance_path, testing),
        inbox_name=_inbox_name(config["POSWEB_INBOX_NAME"]),
        database_timeout=_duration(config, "POSWEB_DATABASE_TIMEOUT"),
        duplicate_window=_duration(config, "POSWEB_DUPLICATE_WINDOW"),
        dispatch=dispatch,
        max_attempts=int(_number(config, "POSWEB_MAX_ATTEMPTS")),
        # A zero backoff makes retries immediate: for tests only.
        retry_backoff=_duration(config, "POSWEB_RETRY_BACKOFF", zero=testing),
        retry_max_delay=_duration(config, "POSWEB_RETRY_MAX_DELAY", zero=testing),
        lease=_duration(config, "POSWEB_LEASE"),
        poll_interval=_duration(config, "POSWEB_POLL_INTERVAL"),
        retry_after=max(1, round(_duration(config, "POSWEB_RETRY_AFTER"))),
        retention=Retention(
            processed=_duration(config, "POSWEB_RETENTION"),
            dead=_duration(config, "POSWEB_DEAD_RETENTION"),
            rejected=_duration(config, "POSWEB_REJECTED_MAX_AGE"),
            rejected_max_count=int(_number(config, "POSWEB_REJECTED_MAX_COUNT")),
        ),
        celery_publish_timeout=_duration(config, "POSWEB_CELERY_PUBLISH_TIMEOUT"),
        celery_requeue_after=_duration(config, "POSWEB_CELERY_REQUEUE_AFTER"),
        celery_relay=bool(config["POSWEB_CELERY_RELAY"]),
        loyalty_time_budget=_duration(config, "POSWEB_LOYALTY_TIME_BUDGET"),
        loyalty_retention=_duration(config, "POSWEB_LOYALTY_RETENTION"),
        dashboard=read_dashboard_settings(config, inbox=bool(config["POSWEB_INBOX"])),
        testing=testing,
    )


def _warn_unknown(config: c.Mapping[str, t.Any]) -> None:
    """A misspelt key is otherwise silently ignored (``POSWEB_MAX_ATTEMPT = 3``)."""
    # Compared without the shared prefix, which would make any two keys look alike.
    known = {key.removeprefix("POSWEB_"): key for key in DEFAULTS}
    for key in config:
        if key.startswith("POSWEB_") and key not in DEFAULTS:
            close = difflib.get_close_matches(key.removeprefix("POSWEB_"), known, n=1)
            hint = f"; did you mean {known[close[0]]!r}?" if close else ""
            warnings.warn(f"Unknown setting {key!r}{hint}", PosWebWarning, stacklevel=4)


def _openapi(config: c.Mapping[str, t.Any]) -> bool:
    """Fail at setup, not at the first request for the document."""
    enabled = bool(config["POSWEB_OPENAPI"])
    if enabled and importlib.util.find_spec("apispec") is None:
        raise ConfigurationError(
            "POSWEB_OPENAPI needs apispec: pip install 'Flask-PosWeb[openapi]'."
        )
    return enabled


def _number(config: c.Mapping[str, t.Any], key: str) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{key} must be a positive number, not {value!r}.")
    return float(value)


def _duration(config: c.Mapping[str, t.Any], key: str, *, zero: bool = False) -> float:
    value = config[key]
    try:
        seconds = to_seconds(value, numbers=key not in RETENTION_KEYS)
    except TypeError as exc:
        raise ConfigurationError(f"{key} needs a unit: {exc}") from None
    except ValueError as exc:
        raise ConfigurationError(f"{key}: {exc}") from None
    if seconds < 0 or (seconds == 0 and not zero):
        raise ConfigurationError(f"{key} must be a positive duration, not {value!r}.")
    return seconds


def _inbox_name(value: t.Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise ConfigurationError(
            f"POSWEB_INBOX_NAME must be a string of 1 to 64 characters, not {value!r}."
        )
    return value


def _database_url(value: t.Any, instance_path: str, testing: bool) -> str | None:
    """The inbox's URL: the default file, or a relative SQLite path, in the
    instance folder (as Flask-SQLAlchemy does); ``None`` for a private one."""
    if value is None:
        if testing:
            return None
        return "sqlite:///" + os.path.join(instance_path, "posweb.sqlite3")
    try:
        url = sa.engine.make_url(value)
    except sa.exc.ArgumentError:
        raise ConfigurationError(f"POSWEB_DATABASE_URL is not a database URL: {value!r}.") from None
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return str(value)
    if database.startswith("file:"):  # an SQLite URI: its path follows 'file:'
        path, _, query = database.removeprefix("file:").partition("?")
        if not os.path.isabs(path):
            database = "file:" + os.path.join(instance_path, path) + ("?" + query if query else "")
    elif not os.path.isabs(database):
        database = os.path.join(instance_path, database)
    return url.set(database=database).render_as_string(hide_password=False)


def _strings(key: str, value: t.Any) -> list[str]:
    items = [value] if isinstance(value, str) else list(value or ())
    if not all(isinstance(item, str) and item for item in items):
        raise ConfigurationError(f"{key} must hold non-empty strings.")
    return items


def _strong(key: str, values: c.Iterable[str]) -> None:
    """Secrets long enough that guessing is hopeless; the message shows how to make one."""
    for value in values:
        if len(value) < MIN_SECRET_LENGTH:
            # The fix is shown, never a key: an error message may end up in a log.
            raise ConfigurationError(
                f"{key} holds a secret of {len(value)} characters; use at least "
                f'{MIN_SECRET_LENGTH}, e.g. one made by: python -c "import secrets; '
                f'print(secrets.token_urlsafe(32))"'
            )


def _pairs(config: c.Mapping[str, t.Any], key: str) -> list[tuple[str, list[str]]]:
    """``{"name": "secret" | [secrets]}`` or ``[("name", "secret"), ...]`` as pairs."""
    value = config[key] or {}
    items = value.items() if isinstance(value, c.Mapping) else value
    pairs: dict[str, list[str]] = {}
    try:
        for name, secrets_ in items:
            pairs.setdefault(_strings(key, name)[0], []).extend(_strings(key, secrets_))
    except (TypeError, ValueError, IndexError):
        raise ConfigurationError(
            f"{key} must map names to secrets, e.g. {{'dealpos': 'secret'}}."
        ) from None
    for accepted in pairs.values():
        _strong(key, accepted)
    return list(pairs.items())


def _tokens(config: c.Mapping[str, t.Any]) -> TokenAuthority | None:
    clients = _pairs(config, "POSWEB_OAUTH_CLIENTS")
    if not clients:
        return None
    keys = config["POSWEB_OAUTH_SIGNING_KEY"] or config.get("SECRET_KEY")
    if not keys:
        raise ConfigurationError(
            "POSWEB_OAUTH_CLIENTS needs a signing key: set POSWEB_OAUTH_SIGNING_KEY or SECRET_KEY."
        )
    signing_keys = [keys] if isinstance(keys, (str, bytes)) else list(keys)
    ttl = _duration(config, "POSWEB_TOKEN_TTL")
    return TokenAuthority(dict(clients), signing_keys, ttl)


def _authenticator(
    config: c.Mapping[str, t.Any], tokens: TokenAuthority | None
) -> Authenticator | None:
    verifiers: list[Verifier] = []
    keys = _strings("POSWEB_API_KEYS", config["POSWEB_API_KEYS"])
    if "POSWEB_API_KEY" in config and not keys:
        raise ConfigurationError(
            "POSWEB_API_KEY is not a setting: put the key in POSWEB_API_KEYS "
            "(a list, for rotation)."
        )
    _strong("POSWEB_API_KEYS", keys)
    if keys:
        verifiers.append(ApiKeyVerifier(keys, config["POSWEB_API_KEY_HEADER"]))
    basic = [(user, pw) for user, pws in _pairs(config, "POSWEB_BASIC_AUTH") for pw in pws]
    if basic:
        verifiers.append(BasicVerifier(basic))
    if tokens is not None:
        verifiers.append(BearerVerifier(tokens))
    if config["POSWEB_NO_AUTH"]:
        if verifiers:
            raise ConfigurationError(
                "POSWEB_NO_AUTH is set together with credentials; remove one or the other."
            )
        warnings.warn(
            "POSWEB_NO_AUTH is set: anyone who can reach the webhook URLs can post events.",
            InsecureWebhookWarning,
            stacklevel=4,
        )
        return None
    if not verifiers:
        raise ConfigurationError(
            "Flask-PosWeb accepts no webhook without credentials: set POSWEB_API_KEYS, "
            "POSWEB_BASIC_AUTH or POSWEB_OAUTH_CLIENTS (or POSWEB_NO_AUTH = True for "
            "local development only)."
        )
    return Authenticator(verifiers)
