"""Whose credentials: every accepted secret belongs to a merchant.

DealPOS is multi-tenant: each merchant enters, in its own back office, the
URLs and the credentials DealPOS sends them with. So a credential here always
names its merchant (``None`` for the app's own, the ``POSWEB_API_KEYS``-style
settings of a single shop), and a request is authenticated *as* a merchant:

- by URL, the merchant named in it (``/dealpos/<merchant>/...``) is looked up
  and the request must carry one of that merchant's credentials;
- by credential, one URL for all: the presented API key, Basic user or OAuth
  client is looked up, and names the merchant.

Where credentials come from is a :data:`Lookup`: the app's settings
(:class:`StaticCredentials`), or the host's own store through a function it
registers (``@posweb.credentials``), asked with a :class:`CredentialQuery` and
cached (:class:`CachedLookup`), so that onboarding, rotation and revocation
need no restart and a lookup is not a query per request.

Pure: no Flask, no database.

.. versionadded:: 0.3
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

from ..exceptions import UnavailableError
from .secrets import digest
from .secrets import digests

__all__ = [
    "MERCHANT_NAME",
    "CachedLookup",
    "CredentialQuery",
    "Credentials",
    "Lookup",
    "StaticCredentials",
    "chain",
    "is_merchant_name",
    "key_query",
]

#: A merchant's name, as it may appear in a URL: letters, digits, ``-`` and
#: ``_``, starting with a letter or digit, at most 64 characters (a DealPOS
#: subdomain fits). Checked before any lookup.
MERCHANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: Longest key id looked up (a Basic user name, an OAuth client id).
MAX_ID_LENGTH = 256

Kind = t.Literal["merchant", "api_key", "basic", "oauth"]

logger = logging.getLogger("flask_posweb")


def is_merchant_name(name: object) -> bool:
    """Whether ``name`` can be a merchant's (see :data:`MERCHANT_NAME`)."""
    return isinstance(name, str) and MERCHANT_NAME.fullmatch(name) is not None


Pairs = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]


def _pairs(value: Pairs) -> dict[str, tuple[str, ...]]:
    items = value.items() if isinstance(value, Mapping) else value
    pairs: dict[str, list[str]] = {}
    for name, secrets in items:
        listed = [secrets] if isinstance(secrets, str) else list(secrets)
        pairs.setdefault(name, []).extend(listed)
    return {name: tuple(secrets) for name, secrets in pairs.items()}


class Credentials:
    """What one merchant accepts: several live secrets of each kind allow rotation.

    A secret may be given as itself or as ``"sha256:<hex>"``, its SHA-256
    digest (see :func:`~flask_posweb.auth.secrets.hashed`).

    :param merchant: the merchant's name, ``None`` for the app's own credentials.
    :param api_keys: keys DealPOS sends in the API key header.
    :param basic: HTTP Basic users and their passwords.
    :param oauth_clients: OAuth client ids and their secrets (the token URL).

    .. versionadded:: 0.3
    """

    __slots__ = ("merchant", "api_keys", "basic", "oauth_clients", "_keys", "_basic", "_clients")

    def __init__(
        self,
        merchant: str | None,
        *,
        api_keys: Iterable[str] = (),
        basic: Pairs = (),
        oauth_clients: Pairs = (),
    ) -> None:
        self.merchant = merchant
        self.api_keys = tuple(api_keys)
        self.basic = _pairs(basic)
        self.oauth_clients = _pairs(oauth_clients)
        # Digests, worked out once per lookup rather than once per request.
        self._keys = digests(self.api_keys)
        self._basic = {user: digests(pws) for user, pws in self.basic.items()}
        self._clients = {client: digests(s) for client, s in self.oauth_clients.items()}

    def __repr__(self) -> str:  # never a secret, not even hashed
        kinds = [k for k in ("api_keys", "basic", "oauth_clients") if getattr(self, k)]
        return f"Credentials({self.merchant!r}: {', '.join(kinds) or 'nothing'})"

    def api_key_digests(self) -> tuple[bytes, ...]:
        return self._keys

    def basic_digests(self, user: str) -> tuple[bytes, ...]:
        """The digests of ``user``'s passwords (none for an unknown user)."""
        return self._basic.get(user, ())

    def client_digests(self, client_id: str) -> tuple[bytes, ...]:
        """The digests of an OAuth client's secrets (none for an unknown client)."""
        return self._clients.get(client_id, ())


class CredentialQuery(t.NamedTuple):
    """What a lookup is asked: whose credentials.

    ``kind`` says what ``id`` is: ``"merchant"``, a merchant's name (taken
    from the URL, or from a token it was issued); ``"api_key"``, the hex
    SHA-256 digest of a presented API key (so a host may keep only digests
    and look them up by index); ``"basic"``, a Basic user name; ``"oauth"``,
    an OAuth client id.

    .. versionadded:: 0.3
    """

    kind: Kind
    id: str


#: Finds the credentials a query asks for: ``None`` when nobody has them.
#: The host's, registered with ``@posweb.credentials`` or ``POSWEB_CREDENTIALS``.
Lookup = Callable[[CredentialQuery], "Credentials | None"]


class StaticCredentials:
    """A :data:`Lookup` over credentials known in advance (the app's settings, tests).

    .. versionadded:: 0.3
    """

    def __init__(self, credentials: Iterable[Credentials]) -> None:
        self.credentials = tuple(credentials)
        self._by: dict[CredentialQuery, Credentials] = {}
        for creds in self.credentials:
            ids = [CredentialQuery("api_key", d.hex()) for d in creds.api_key_digests()]
            ids += [CredentialQuery("basic", user) for user in creds.basic]
            ids += [CredentialQuery("oauth", client) for client in creds.oauth_clients]
            if creds.merchant is not None:
                ids.append(CredentialQuery("merchant", creds.merchant))
            for query in ids:
                self._by.setdefault(query, creds)

    def __call__(self, query: CredentialQuery) -> Credentials | None:
        return self._by.get(query)

    def default(self) -> Credentials | None:
        """The app's own credentials (merchant ``None``), if any."""
        return next((c for c in self.credentials if c.merchant is None), None)


def chain(*lookups: Lookup) -> Lookup:
    """A lookup that asks each of ``lookups`` in turn; the first answer wins."""

    def lookup(query: CredentialQuery) -> Credentials | None:
        for each in lookups:
            found = each(query)
            if found is not None:
                return found
        return None

    return lookup


class CachedLookup:
    """The host's lookup, asked at most once per query and ``ttl`` seconds.

    Answers are cached, and so is "nobody" (a negative entry), so that an
    unknown merchant sending again costs no query either. Both caches are
    bounded, least recently used first out, and apart: a flood of unknown
    names cannot evict the merchants that are real. A change in the host's
    store (a new merchant, a rotated or revoked secret) is seen within ``ttl``.

    A lookup that raises (the host's database is down) is not an answer: it
    is logged, nothing is cached, and the request is a 503, which DealPOS
    retries (a 401 would be final).

    :param size: entries kept in each cache (known, and unknown).
    :param retry_after: seconds, sent with the 503 of a lookup that failed.
    :param clock: a monotonic clock in seconds; tests pass their own.
    """

    def __init__(
        self,
        lookup: Lookup,
        ttl: float = 60,
        *,
        size: int = 10_000,
        retry_after: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lookup = lookup
        self.ttl = ttl
        self.size = size
        self.retry_after = retry_after
        self.clock = clock
        self._known: collections.OrderedDict[CredentialQuery, tuple[float, Credentials]] = (
            collections.OrderedDict()
        )
        self._unknown: collections.OrderedDict[CredentialQuery, float] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, query: CredentialQuery) -> Credentials | None:
        now = self.clock()
        with self._lock:
            known = self._known.get(query)
            if known is not None and now - known[0] < self.ttl:
                self._known.move_to_end(query)
                return known[1]
            unknown = self._unknown.get(query)
            if unknown is not None and now - unknown < self.ttl:
                return None
        try:
            found = self.lookup(query)  # outside the lock: the host's store may be slow
        except Exception as exc:
            logger.exception("The credentials lookup failed (%s %r)", query.kind, query.id[:64])
            raise UnavailableError(
                "The credentials could not be looked up; retry later.", self.retry_after
            ) from exc
        if found is not None and not isinstance(found, Credentials):
            raise TypeError(
                f"The credentials lookup must return Credentials or None, not {found!r}."
            )
        with self._lock:
            self._known.pop(query, None)
            self._unknown.pop(query, None)
            if found is None:
                _bounded_put(self._unknown, query, now, self.size)
            else:
                _bounded_put(self._known, query, (now, found), self.size)
        return found

    def clear(self) -> None:
        """Forget every answer (a host that knows its store just changed)."""
        with self._lock:
            self._known.clear()
            self._unknown.clear()


K = t.TypeVar("K")
V = t.TypeVar("V")


def _bounded_put(cache: collections.OrderedDict[K, V], key: K, value: V, size: int) -> None:
    cache[key] = value
    while len(cache) > size:
        cache.popitem(last=False)


def key_query(api_key: str) -> CredentialQuery:
    """The query that finds whose ``api_key`` this is (by its digest)."""
    return CredentialQuery("api_key", digest(api_key).hex())
