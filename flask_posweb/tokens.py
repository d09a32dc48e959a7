"""OAuth 2.0 client credentials (RFC 6749 section 4.4) without server state.

DealPOS calls the merchant's ``ServerAuthenticationURL`` for a token, then sends
it as ``Authorization: Bearer ...`` with each webhook. Tokens here are signed
(itsdangerous, which Flask ships), not stored: any process or machine with the
same configuration verifies them. The signing key of a token is derived from
the server's signing key *and* the client's secret, so rotating either one
revokes every token issued before, and nothing derived from the secret is
readable in the token.

.. versionadded:: 0.1
"""

from __future__ import annotations

import hashlib
import hmac
import time
import typing as t
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

from itsdangerous import BadSignature
from itsdangerous import URLSafeSerializer

from .verification import digests
from .verification import matches_any

__all__ = ["TokenAuthority"]

_SALT = "flask-posweb.access-token"
_SHA256 = {"digest_method": hashlib.sha256}


def _derive(signing_key: str | bytes, client_id: str, secret: str) -> bytes:
    key = signing_key.encode() if isinstance(signing_key, str) else signing_key
    message = f"{client_id}\0{secret}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()


class TokenAuthority:
    """Issues and verifies access tokens for a fixed set of clients.

    :param clients: client id to its accepted secrets (several during a rotation).
    :param signing_keys: server keys, newest last; tokens are signed with the newest.
    :param ttl: token lifetime in seconds.
    :param clock: returns the current Unix time; tests pass their own.
    """

    def __init__(
        self,
        clients: Mapping[str, Sequence[str]],
        signing_keys: Sequence[str | bytes],
        ttl: float = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clients = {client: tuple(secrets) for client, secrets in clients.items()}
        self.signing_keys = tuple(signing_keys)
        self.ttl = int(ttl)
        self.clock = clock

    def authenticate_client(self, client_id: str, secret: str) -> bool:
        """Whether ``secret`` is one of ``client_id``'s secrets (constant time)."""
        # An unknown client is compared against a dummy so that its timing
        # matches a known client with a wrong secret.
        accepted = self.clients.get(client_id, ("\0unknown-client",))
        return matches_any(secret, digests(accepted)) and client_id in self.clients

    def issue(self, client_id: str, secret: str) -> dict[str, t.Any]:
        """A token response body (RFC 6749 section 5.1) for an authenticated client."""
        signer = URLSafeSerializer(
            _derive(self.signing_keys[-1], client_id, secret), salt=_SALT, signer_kwargs=_SHA256
        )
        expires = int(self.clock()) + self.ttl
        token = signer.dumps({"sub": client_id, "exp": expires})
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}

    def verify(self, token: str) -> str | None:
        """The client id of a valid, unexpired token; ``None`` otherwise."""
        claimed = _claimed_client(token)
        if claimed not in self.clients:
            return None
        keys = [
            _derive(signing_key, claimed, secret)
            for signing_key in self.signing_keys
            for secret in self.clients[claimed]
        ]
        try:
            payload = URLSafeSerializer(keys, salt=_SALT, signer_kwargs=_SHA256).loads(token)
        except BadSignature:
            return None
        if not isinstance(payload, dict) or payload.get("sub") != claimed:
            return None
        expires = payload.get("exp")
        if not isinstance(expires, int) or expires <= self.clock():
            return None
        return claimed


def _claimed_client(token: str) -> str | None:
    """The client id a token claims, before its signature is checked."""
    try:
        _, payload = URLSafeSerializer(b"-", salt=_SALT).loads_unsafe(token)
    except Exception:  # a malformed token is simply not valid
        return None
    sub = payload.get("sub") if isinstance(payload, dict) else None
    return sub if isinstance(sub, str) else None
