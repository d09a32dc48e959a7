"""Who may post: pure credential checks on request headers, no Flask request.

A request carries one of three kinds of credential, each a *mode* the app
turns on: an API key in a header, HTTP Basic (RFC 7617), or a bearer token
from our own token URL (RFC 6750). :class:`Authenticator` finds the one
presented, looks up whose it is (see :mod:`.credentials`) and says which
merchant the request comes from, or refuses it. It fails closed: no
configured mode, no credential, a credential of another merchant than the URL
names, all are a 401 with every mode's challenge. Comparisons are constant
time (:mod:`.secrets`).

.. versionadded:: 0.1
.. versionchanged:: 0.3
    Credentials belong to merchants; :meth:`Authenticator.authenticate`
    returns the merchant.
"""

from __future__ import annotations

import hmac
import typing as t
from collections.abc import Callable
from collections.abc import Iterable

from werkzeug.datastructures import Authorization

from ..exceptions import AuthenticationError
from ..headers import Headers
from .credentials import MAX_ID_LENGTH
from .credentials import CredentialQuery
from .credentials import Credentials
from .credentials import Lookup
from .credentials import is_merchant_name
from .credentials import key_query
from .secrets import HASH_PREFIX
from .secrets import matches_any
from .tokens import TokenAuthority
from .tokens import fingerprint

__all__ = ["REALM", "Audience", "Authenticator", "Mode", "parse_basic"]

REALM = "DealPOS webhooks"

#: Who this server is, for tokens: computed only when a token is checked.
Audience = Callable[[], str]

Mode = t.Literal["api_key", "basic", "bearer"]


def parse_basic(headers: Headers) -> tuple[str, str] | None:
    """The (user, password) of a Basic ``Authorization`` header, or ``None``."""
    found = Authorization.from_header(headers.get("Authorization"))
    if found is None or found.type != "basic" or not found.username:
        return None
    return found.username, found.password or ""


def _bearer(headers: Headers) -> str | None:
    found = Authorization.from_header(headers.get("Authorization"))
    if found is None or found.type != "bearer" or not found.token:
        return None
    return found.token


class Authenticator:
    """Decides which merchant a request comes from, or refuses it.

    :param own: the app's own credentials (merchant ``None``: the
        ``POSWEB_API_KEYS``-style settings), accepted at URLs that name no merchant.
    :param lookup: the merchants' credentials (the host's lookup, cached).
    :param modes: the kinds of credential accepted, in the order their
        challenges are sent.
    :param api_key_header: the header that carries an API key.
    :param tokens: the token authority, for the ``bearer`` mode.
    """

    def __init__(
        self,
        own: Credentials | None,
        lookup: Lookup | None,
        modes: Iterable[Mode],
        *,
        api_key_header: str = "X-API-Key",
        tokens: TokenAuthority | None = None,
    ) -> None:
        self.own = own
        self.lookup = lookup
        self.modes = tuple(dict.fromkeys(modes))
        self.api_key_header = api_key_header
        self.tokens = tokens
        if "bearer" in self.modes and tokens is None:
            raise ValueError("the bearer mode needs a token authority")

    # -- challenges ------------------------------------------------------------------

    def challenge(self, mode: Mode, headers: Headers) -> str:
        """The ``WWW-Authenticate`` challenge of ``mode`` for a refused request."""
        if mode == "api_key":
            return f'ApiKey realm="{REALM}", header="{self.api_key_header}"'
        if mode == "basic":
            return f'Basic realm="{REALM}", charset="UTF-8"'
        if _bearer(headers) is not None:  # RFC 6750 section 3.1: a token was sent and refused
            return f'Bearer realm="{REALM}", error="invalid_token"'
        return f'Bearer realm="{REALM}"'

    def refusal(self, headers: Headers) -> AuthenticationError:
        """The 401 for these headers, with every mode's challenge."""
        return AuthenticationError([self.challenge(mode, headers) for mode in self.modes])

    # -- requests --------------------------------------------------------------------

    def authenticate(
        self, headers: Headers, merchant: str | None = None, audience: Audience | None = None
    ) -> str | None:
        """The merchant whose valid credential the headers carry (``None``: the app's own).

        :param merchant: the merchant the URL names: only its credentials are
            accepted. ``None``: one URL for all, the credential says whose it is.
        :param audience: this server's identity, for tokens.
        :raises AuthenticationError: no mode accepted the headers.
        """
        if merchant is not None and not is_merchant_name(merchant):
            raise self.refusal(headers)  # never looked up
        for mode in self.modes:
            found = self._check(mode, headers, merchant, audience)
            if found is not None:
                return found.merchant
        raise self.refusal(headers)

    def _check(
        self, mode: Mode, headers: Headers, merchant: str | None, audience: Audience | None
    ) -> Credentials | None:
        if mode == "api_key":
            key = headers.get(self.api_key_header)
            if not key or len(key) > MAX_ID_LENGTH:
                return None
            return self._first(
                merchant, key_query(key), lambda c: matches_any(key, c.api_key_digests())
            )
        if mode == "basic":
            pair = parse_basic(headers)
            if pair is None or len(pair[0]) > MAX_ID_LENGTH:
                return None
            user, password = pair
            return self._first(
                merchant,
                CredentialQuery("basic", user),
                lambda c: matches_any(password, c.basic_digests(user)),
            )
        token = _bearer(headers)
        if token is None or audience is None:
            return None
        return self._bearer(token, merchant, audience())

    def _bearer(self, token: str, merchant: str | None, audience: str) -> Credentials | None:
        assert self.tokens is not None
        claims = self.tokens.read(token, audience)
        if claims is None and merchant is None and self.own is not None:
            return self._bearer_v2(token, audience, self.own)
        if claims is None or claims.merchant != merchant and merchant is not None:
            return None  # a token of merchant A at B's URL: not even looked up
        creds = self.own if claims.merchant is None else self._merchant(claims.merchant)
        if creds is None or creds.merchant != claims.merchant:
            return None
        # Compared with every current secret's mark: a removed secret revokes its tokens.
        found = False
        for secret_digest in creds.client_digests(claims.client_id):
            found |= hmac.compare_digest(fingerprint(secret_digest), claims.fingerprint)
        return creds if found else None

    def _bearer_v2(self, token: str, audience: str, own: Credentials) -> Credentials | None:
        """A token of 0.2, for the app's own clients, until it expires (removed in 0.4)."""
        assert self.tokens is not None

        def secrets(client_id: str) -> tuple[str, ...]:
            plain = own.oauth_clients.get(client_id, ())
            return tuple(s for s in plain if not s.startswith(HASH_PREFIX))

        return own if self.tokens.read_v2(token, audience, secrets) is not None else None

    # -- the token URL ---------------------------------------------------------------

    def client(
        self, client_id: str, secret: str, merchant: str | None = None
    ) -> Credentials | None:
        """The credentials of the merchant whose OAuth client this is, when
        ``secret`` is one of its secrets (constant time); ``None`` otherwise.

        :param merchant: the merchant the token URL names, if it names one.
        """
        if merchant is not None and not is_merchant_name(merchant):
            return None
        if not client_id or len(client_id) > MAX_ID_LENGTH:
            return None
        return self._first(
            merchant,
            CredentialQuery("oauth", client_id),
            lambda c: matches_any(secret, c.client_digests(client_id)),
        )

    # -- lookups ---------------------------------------------------------------------

    def _merchant(self, merchant: str) -> Credentials | None:
        """A merchant's credentials, by name."""
        if self.lookup is None:
            return None
        found = self.lookup(CredentialQuery("merchant", merchant))
        # Whatever the host's lookup answers, only that merchant's own count.
        return found if found is not None and found.merchant == merchant else None

    def _first(
        self,
        merchant: str | None,
        query: CredentialQuery,
        accepts: Callable[[Credentials], bool],
    ) -> Credentials | None:
        """The credentials that accept a presented secret: at a merchant's URL
        that merchant's only; elsewhere the app's own, then whoever the
        presented credential names (``query``)."""
        if merchant is not None:
            found = self._merchant(merchant)
        elif self.own is not None and accepts(self.own):
            return self.own
        else:
            found = self.lookup(query) if self.lookup is not None else None
        return found if found is not None and accepts(found) else None
