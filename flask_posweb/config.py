"""Every ``POSWEB_*`` configuration key with its default.

This mapping is the single source for the code, the README's table and the
tests. Keys are read once, when the blueprint is registered on an app; set them
in ``app.config`` before ``register_blueprint`` / ``init_app``. Durations are
seconds (``int``/``float``) or :class:`datetime.timedelta`.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import os
import typing as t
import warnings
from datetime import timedelta

from .exceptions import ConfigurationError
from .exceptions import InsecureWebhookWarning
from .headers import SECRET_HEADERS
from .tokens import TokenAuthority
from .verification import ApiKeyVerifier
from .verification import Authenticator
from .verification import BasicVerifier
from .verification import BearerVerifier
from .verification import Verifier

DEFAULTS: dict[str, t.Any] = {
    #: URL prefix used by ``PosWeb.init_app``; ``register_blueprint(url_prefix=...)``
    #: overrides it.
    "POSWEB_URL_PREFIX": "/dealpos",
    #: Accepted API keys (a string or a list, for rotation), sent in the header below.
    "POSWEB_API_KEYS": [],
    #: Header that carries the API key (DealPOS's OpenAPI file declares ``X-API-Key``).
    "POSWEB_API_KEY_HEADER": "X-API-Key",
    #: HTTP Basic credentials: ``{"user": "password"}`` or a list of pairs.
    "POSWEB_BASIC_AUTH": {},
    #: OAuth 2.0 client credentials: ``{"client_id": "secret"}``; a list of secrets
    #: per client allows rotation. Enables the token URL ``<prefix>/oauth/token``.
    "POSWEB_OAUTH_CLIENTS": {},
    #: Key that signs access tokens (a list to rotate: newest last); default ``SECRET_KEY``.
    "POSWEB_OAUTH_SIGNING_KEY": None,
    #: Lifetime of an issued access token.
    "POSWEB_TOKEN_TTL": 3600,
    #: Accept webhooks with no authentication at all. For local development only;
    #: emits ``InsecureWebhookWarning``.
    "POSWEB_NO_AUTH": False,
    #: Largest accepted body in bytes (DealPOS sends small JSON objects); 413 above.
    "POSWEB_MAX_CONTENT_LENGTH": 1024 * 1024,
    #: Keep every delivery in the inbox before answering 200. ``False`` runs
    #: receivers in the request and answers 500 when one fails.
    "POSWEB_INBOX": True,
    #: SQLAlchemy URL of the inbox; ``None`` is an SQLite file in the instance folder.
    "POSWEB_DATABASE_URL": None,
    #: SQLite busy timeout / PostgreSQL lock and statement timeout. A commit that
    #: waits longer is answered 503 so DealPOS retries.
    "POSWEB_DATABASE_TIMEOUT": 5,
    #: Where receivers run: ``"inline"`` (in the request, after the commit),
    #: ``"thread"`` (a background thread in the web process) or ``"worker"``
    #: (only in ``flask posweb worker``).
    "POSWEB_DISPATCH": "inline",
    #: Attempts per delivery before it is ``dead``.
    "POSWEB_MAX_ATTEMPTS": 8,
    #: Delay before the first retry; doubled on each further attempt.
    "POSWEB_RETRY_BACKOFF": 30,
    #: Upper bound of the retry delay.
    "POSWEB_RETRY_MAX_DELAY": 3600,
    #: How long a dispatcher owns a delivery; a delivery whose dispatcher died is
    #: picked up again once its lease has run out.
    "POSWEB_LEASE": 120,
    #: How often a worker (or the background thread) looks for due deliveries.
    "POSWEB_POLL_INTERVAL": 1.0,
    #: ``Retry-After`` sent with a 503.
    "POSWEB_RETRY_AFTER": 10,
    #: Age after which ``flask posweb prune`` deletes processed deliveries.
    "POSWEB_RETENTION": timedelta(days=30),
    #: Rejected deliveries kept at most (the oldest go first) ...
    "POSWEB_REJECTED_MAX_COUNT": 10_000,
    #: ... and for at most this long.
    "POSWEB_REJECTED_MAX_AGE": timedelta(days=30),
    #: Time a loyalty provider may take before DealPOS is answered 503 (it gives up
    #: after 30 s and retries 7 s later).
    "POSWEB_LOYALTY_TIME_BUDGET": 10,
}


def seconds(value: float | timedelta) -> float:
    """Return a duration setting in seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


Dispatch = t.Literal["inline", "thread", "worker"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The ``POSWEB_*`` configuration of one app, checked and typed.

    Built once when the blueprint is registered (see :func:`read_settings`).
    """

    #: ``None`` only with ``POSWEB_NO_AUTH``.
    authenticator: Authenticator | None
    tokens: TokenAuthority | None
    api_key_header: str
    #: Headers never kept with a delivery: the usual credentials and the API key's.
    hidden_headers: frozenset[str]
    max_content_length: int
    inbox: bool
    database_url: str
    database_timeout: float
    dispatch: Dispatch
    max_attempts: int
    retry_backoff: float
    retry_max_delay: float
    lease: float
    poll_interval: float
    retry_after: int
    retention: float
    rejected_max_count: int
    rejected_max_age: float
    loyalty_time_budget: float


def read_settings(config: c.Mapping[str, t.Any], instance_path: str) -> Settings:
    """Check an app's configuration and build its :class:`Settings`.

    :raises ConfigurationError: saying which key to set, and how.
    """
    dispatch = config["POSWEB_DISPATCH"]
    if dispatch not in t.get_args(Dispatch):
        raise ConfigurationError(
            f"POSWEB_DISPATCH must be 'inline', 'thread' or 'worker', not {dispatch!r}."
        )
    url = config["POSWEB_DATABASE_URL"] or "sqlite:///" + os.path.join(
        instance_path, "posweb.sqlite3"
    )
    tokens = _tokens(config)
    return Settings(
        authenticator=_authenticator(config, tokens),
        tokens=tokens,
        api_key_header=config["POSWEB_API_KEY_HEADER"],
        hidden_headers=SECRET_HEADERS | {config["POSWEB_API_KEY_HEADER"].lower()},
        max_content_length=_positive(config, "POSWEB_MAX_CONTENT_LENGTH", int),
        inbox=bool(config["POSWEB_INBOX"]),
        database_url=url,
        database_timeout=_positive(config, "POSWEB_DATABASE_TIMEOUT"),
        dispatch=dispatch,
        max_attempts=_positive(config, "POSWEB_MAX_ATTEMPTS", int),
        retry_backoff=_positive(config, "POSWEB_RETRY_BACKOFF"),
        retry_max_delay=_positive(config, "POSWEB_RETRY_MAX_DELAY"),
        lease=_positive(config, "POSWEB_LEASE"),
        poll_interval=_positive(config, "POSWEB_POLL_INTERVAL"),
        retry_after=_positive(config, "POSWEB_RETRY_AFTER", int),
        retention=_positive(config, "POSWEB_RETENTION"),
        rejected_max_count=_positive(config, "POSWEB_REJECTED_MAX_COUNT", int),
        rejected_max_age=_positive(config, "POSWEB_REJECTED_MAX_AGE"),
        loyalty_time_budget=_positive(config, "POSWEB_LOYALTY_TIME_BUDGET"),
    )


_N = t.TypeVar("_N", int, float)


def _positive(config: c.Mapping[str, t.Any], key: str, kind: type[_N] = float) -> _N:  # type: ignore[assignment]
    value = config[key]
    number = seconds(value) if isinstance(value, timedelta) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
        raise ConfigurationError(f"{key} must be a positive number, not {value!r}.")
    return kind(number)


def _strings(key: str, value: t.Any) -> list[str]:
    items = [value] if isinstance(value, str) else list(value or ())
    if not all(isinstance(item, str) and item for item in items):
        raise ConfigurationError(f"{key} must hold non-empty strings.")
    return items


def _pairs(config: c.Mapping[str, t.Any], key: str) -> list[tuple[str, list[str]]]:
    """``{"name": "secret" | [secrets]}`` or ``[("name", "secret"), ...]`` as pairs."""
    value = config[key] or {}
    items = value.items() if isinstance(value, c.Mapping) else value
    pairs: dict[str, list[str]] = {}
    try:
        for name, secrets in items:
            pairs.setdefault(_strings(key, name)[0], []).extend(_strings(key, secrets))
    except (TypeError, ValueError, IndexError):
        raise ConfigurationError(
            f"{key} must map names to secrets, e.g. {{'dealpos': 'secret'}}."
        ) from None
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
    ttl = _positive(config, "POSWEB_TOKEN_TTL")
    return TokenAuthority(dict(clients), signing_keys, ttl)


def _authenticator(
    config: c.Mapping[str, t.Any], tokens: TokenAuthority | None
) -> Authenticator | None:
    verifiers: list[Verifier] = []
    keys = _strings("POSWEB_API_KEYS", config["POSWEB_API_KEYS"])
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
            stacklevel=2,
        )
        return None
    if not verifiers:
        raise ConfigurationError(
            "Flask-PosWeb accepts no webhook without credentials: set POSWEB_API_KEYS, "
            "POSWEB_BASIC_AUTH or POSWEB_OAUTH_CLIENTS (or POSWEB_NO_AUTH = True for "
            "local development only)."
        )
    return Authenticator(verifiers)
