"""Who may post webhooks: pure credential checks, no Flask request.

Each verifier looks at the request headers only. Every comparison is constant
time (:func:`hmac.compare_digest` over fixed-length digests, so neither the
content nor the length of a secret leaks) and every accepted credential is
compared, not just the first that matches.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import typing as t
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

from ..exceptions import AuthenticationError

if t.TYPE_CHECKING:
    from werkzeug.datastructures import Headers as WerkzeugHeaders

    from .tokens import TokenAuthority

    #: Request headers: werkzeug's (case-insensitive) or any mapping.
    Headers = WerkzeugHeaders | Mapping[str, str]

#: Who this server is, for tokens: computed only when a token is checked.
Audience = Callable[[], str]

__all__ = [
    "Audience",
    "ApiKeyVerifier",
    "Authenticator",
    "BasicVerifier",
    "BearerVerifier",
    "Verifier",
    "digests",
    "matches_any",
]

REALM = "DealPOS webhooks"


def _digest(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).digest()


def digests(secrets: Iterable[str | bytes]) -> tuple[bytes, ...]:
    """The digests :func:`matches_any` compares, computed once per configuration."""
    return tuple(_digest(secret) for secret in secrets)


def matches_any(given: str | bytes, accepted: Sequence[bytes]) -> bool:
    """Compare ``given`` with every accepted secret's digest in constant time.

    Digests make both sides the same length; the loop never stops early, so the
    time taken does not depend on which secret matched.

    :param accepted: from :func:`digests`.
    """
    given_digest = _digest(given)
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(given_digest, candidate)
    return found


def _authorization(headers: Headers, scheme: str) -> str | None:
    """The credentials after ``scheme`` in the Authorization header, if that scheme."""
    value = headers.get("Authorization", "")
    name, _, credentials = value.partition(" ")
    if name.lower() != scheme.lower() or not credentials.strip():
        return None
    return credentials.strip()


class Verifier(t.Protocol):
    """One way of authenticating a request."""

    #: The ``WWW-Authenticate`` challenge sent with a 401.
    challenge: str

    def verify(self, headers: Headers, audience: Audience | None = None) -> bool:
        """Whether the headers carry a valid credential of this kind.

        :param audience: this server's identity, for credentials bound to one.
        """

    def challenge_for(self, headers: Headers) -> str:
        """The challenge to send with a 401 for these headers."""


class ApiKeyVerifier:
    """A shared key in a header (``X-API-Key``, as DealPOS's OpenAPI file declares).

    :param keys: every accepted key; several allow rotation without downtime.
    :param header: the header that carries the key.
    """

    def __init__(self, keys: Sequence[str], header: str = "X-API-Key") -> None:
        self.keys = tuple(keys)
        self._digests = digests(self.keys)
        self.header = header
        self.challenge = f'ApiKey realm="{REALM}", header="{header}"'

    def verify(self, headers: Headers, audience: Audience | None = None) -> bool:
        given = headers.get(self.header)
        return given is not None and given != "" and matches_any(given, self._digests)

    def challenge_for(self, headers: Headers) -> str:
        return self.challenge


class BasicVerifier:
    """HTTP Basic authentication (RFC 7617) against several user/password pairs."""

    challenge = f'Basic realm="{REALM}", charset="UTF-8"'

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        # One secret per pair, "user:password", compared as a whole: the user
        # name is as secret as the password here.
        self.accepted = tuple(f"{user}:{password}" for user, password in pairs)
        self._digests = digests(self.accepted)

    def verify(self, headers: Headers, audience: Audience | None = None) -> bool:
        pair = parse_basic(headers)
        return pair is not None and matches_any(f"{pair[0]}:{pair[1]}", self._digests)

    def challenge_for(self, headers: Headers) -> str:
        return self.challenge


def parse_basic(headers: Headers) -> tuple[str, str] | None:
    """The (user, password) of a Basic Authorization header, or ``None``."""
    credentials = _authorization(headers, "Basic")
    if credentials is None:
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BearerVerifier:
    """OAuth 2.0 bearer tokens (RFC 6750) issued by our own token URL."""

    challenge = f'Bearer realm="{REALM}"'

    def __init__(self, authority: TokenAuthority) -> None:
        self.authority = authority

    def verify(self, headers: Headers, audience: Audience | None = None) -> bool:
        token = _authorization(headers, "Bearer")
        if token is None or audience is None:
            return False
        return self.authority.verify(token, audience()) is not None

    def challenge_for(self, headers: Headers) -> str:
        """RFC 6750 section 3.1: a token was sent and refused."""
        if _authorization(headers, "Bearer") is not None:
            return f'{self.challenge}, error="invalid_token"'
        return self.challenge


class Authenticator:
    """Accept a request when any configured verifier accepts it; fail closed.

    :param verifiers: at least one; an empty list would accept nothing.
    """

    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        self.verifiers = tuple(verifiers)

    def authenticate(self, headers: Headers, audience: Audience | None = None) -> None:
        """:raises AuthenticationError: no verifier accepted the headers."""
        if not any(verifier.verify(headers, audience) for verifier in self.verifiers):
            raise AuthenticationError([v.challenge_for(headers) for v in self.verifiers])
