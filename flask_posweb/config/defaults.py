"""Every ``POSWEB_*`` configuration key with its default: the single source for
the code, the docs' table and the tests.

Keys are read once, when the extension is set up on an app; set them in
``app.config`` before ``register_blueprint`` / ``init_app``. Durations take a
number of seconds (or a string of one, as environment variables give), a
:class:`~datetime.timedelta` or a string such as ``"90s"``, ``"10m"``,
``"12h"``, ``"30d"``; the retention keys refuse a bare number (is ``30``
seconds or days?).

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t

__all__ = ["DEFAULTS", "MIN_SECRET_LENGTH", "RETENTION_KEYS"]

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
    #: With a credentials lookup, setting it turns the token URL on for the merchants' clients.
    "POSWEB_OAUTH_SIGNING_KEY": None,
    #: Lifetime of an issued access token (duration).
    "POSWEB_TOKEN_TTL": 3600,
    #: Who tokens are for: a token issued for another audience (a staging host)
    #: is refused. Default: the token URL's own external URL.
    "POSWEB_TOKEN_AUDIENCE": None,
    #: Limit on failed token requests per client address, applied when a
    #: Flask-Limiter ``Limiter`` is registered on the app (its syntax).
    "POSWEB_TOKEN_RATE_LIMIT": "10 per minute",
    #: The host's lookup of merchants' credentials: a callable given a
    #: ``CredentialQuery`` and returning ``Credentials`` or ``None``, or its import
    #: path (``"shop.merchants:credentials"``); ``@posweb.credentials`` registers one too.
    "POSWEB_CREDENTIALS": None,
    #: How long an answer of the credentials lookup is kept (a merchant's
    #: credentials, or that nobody has them): rotation and revocation take
    #: effect within it (duration).
    "POSWEB_CREDENTIALS_TTL": "1m",
    #: Requests per merchant, through the host's Flask-Limiter (its syntax, e.g.
    #: ``"50 per second"``); past it, 429 with ``Retry-After``. ``None``: no limit.
    "POSWEB_MERCHANT_RATE_LIMIT": None,
    #: Accept webhooks with no authentication at all. For local development only;
    #: emits ``InsecureWebhookWarning``.
    "POSWEB_NO_AUTH": False,
    #: Largest accepted body in bytes (DealPOS sends small JSON objects); 413 above.
    "POSWEB_MAX_CONTENT_LENGTH": 1024 * 1024,
    #: Most request headers accepted (DealPOS sends about ten); 431 above, before
    #: the credentials are checked.
    "POSWEB_MAX_HEADERS": 100,
    #: Most bytes of request headers accepted, names and values in all; 431 above.
    "POSWEB_MAX_HEADER_BYTES": 32 * 1024,
    #: Refuse a body lacking fields its documentation marks required even where
    #: the marks are uncertain (every group but Invoice Payment): 422 instead of
    #: accepting it with ``event.missing``.
    "POSWEB_STRICT_PRESENCE": False,
    #: Serve this app's OpenAPI 3.1 description at ``<prefix>/openapi.json``: ``GET``,
    #: without credentials (it describes the endpoints, it receives nothing). Needs
    #: the ``openapi`` extra. ``flask posweb openapi`` writes it either way.
    "POSWEB_OPENAPI": False,
    #: Serve ``GET <prefix>/health`` (below the prefix's fixed part: ``/dealpos/health``
    #: for ``/dealpos/<merchant>``): whether the store is reachable, writable and
    #: current, and its backlog, for load balancers and probes; 200 or 503. Without
    #: credentials: it shows figures only. ``flask posweb check`` runs it either way.
    "POSWEB_HEALTH": False,
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
    #: A delivery due this long, that no live dispatcher has the receivers of (a
    #: deploy renamed or removed one), is marked ``stranded``: counted, signalled,
    #: and waiting for ``flask posweb replay --adopt`` (duration).
    "POSWEB_STRANDED_AFTER": "30m",
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
    #: Where this app's metrics go: ``"opentelemetry"`` (the host's meter
    #: provider; the ``otel`` extra), ``"prometheus"`` (prometheus_client's
    #: registry; the ``prometheus`` extra), both, or none (``[]``). Spans need no
    #: setting: they follow the host's tracer provider. See :doc:`telemetry`.
    "POSWEB_METRICS": [],
    #: Serve the Prometheus exposition at ``<prefix>`` + this path (``"/metrics"``):
    #: ``GET``, without credentials (keep it off the public network). ``None``: not
    #: served (the host exposes the registry itself). Needs ``"prometheus"`` in
    #: ``POSWEB_METRICS``.
    "POSWEB_METRICS_PATH": None,
    #: Merchants that get a label value of their own in the metrics, first come
    #: first served per process; later ones are counted as ``"other"``. ``0``: no
    #: merchant label (every series is the app's).
    "POSWEB_METRICS_MERCHANTS": 0,
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
