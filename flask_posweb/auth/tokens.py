"""OAuth 2.0 client credentials (RFC 6749 section 4.4) without server state.

DealPOS calls the merchant's ``ServerAuthenticationURL`` for a token, then sends
it as ``Authorization: Bearer ...`` with each webhook. Tokens here are signed
(itsdangerous, which Flask ships), not stored: any process or machine with the
same configuration verifies them.

A token is ``<client id>.<claims>.<signature>``, each part URL-safe base64.
The client id travels beside the signed part because it chooses the key: the
key of a token is derived from the server's signing key *and* the client's
secret, so rotating either one revokes every token issued before. Nothing in
a token is decompressed or parsed before its signature is checked, and its
length is bounded first, so a forged token costs one HMAC. The claims name
the audience (the token URL of the server that issued it, or
``POSWEB_TOKEN_AUDIENCE``): a staging server's token is refused in production
even when both share a client and a key.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import typing as t
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

from itsdangerous import BadSignature
from itsdangerous import Signer

from .verification import digests
from .verification import matches_any

__all__ = ["MAX_TOKEN_LENGTH", "TokenAuthority"]

_SALT = "flask-posweb.access-token.v2"
#: Longer tokens are refused before any work (ours are about 150 characters).
MAX_TOKEN_LENGTH = 1024
_MAX_CLIENT_ID = 256


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(signing_key: str | bytes, client_id: str, secret: str) -> bytes:
    key = signing_key.encode() if isinstance(signing_key, str) else signing_key
    return hmac.new(key, f"{client_id}\0{secret}".encode(), hashlib.sha256).digest()


def _signer(keys: Sequence[bytes]) -> Signer:
    return Signer(list(keys), salt=_SALT, key_derivation="hmac", digest_method=hashlib.sha256)


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
        # Every key that verifies a client's tokens, worked out once.
        self._verifiers = {
            client: _signer(
                [_derive(key, client, secret) for key in self.signing_keys for secret in secrets]
            )
            for client, secrets in self.clients.items()
        }
        self._nobody = _signer([hashlib.sha256(b"\0unknown-client").digest()])

    def authenticate_client(self, client_id: str, secret: str) -> bool:
        """Whether ``secret`` is one of ``client_id``'s secrets (constant time)."""
        # An unknown client is compared against a dummy so that its timing
        # matches a known client with a wrong secret.
        accepted = self.clients.get(client_id, ("\0unknown-client",))
        return matches_any(secret, digests(accepted)) and client_id in self.clients

    def issue(self, client_id: str, secret: str, audience: str) -> dict[str, t.Any]:
        """A token response body (RFC 6749 section 5.1) for an authenticated client."""
        claims = {"aud": audience, "exp": int(self.clock()) + self.ttl}
        value = f"{_b64(client_id.encode())}.{_b64(json.dumps(claims).encode())}"
        signer = _signer([_derive(self.signing_keys[-1], client_id, secret)])
        token = signer.sign(value).decode("ascii")
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}

    def verify(self, token: str, audience: str) -> str | None:
        """The client id of a valid, unexpired token for ``audience``; ``None`` otherwise."""
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            return None
        encoded_client, _, _ = token.partition(".")
        if len(encoded_client) > _MAX_CLIENT_ID:
            return None
        try:
            client_id = _unb64(encoded_client).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        signer = self._verifiers.get(client_id, self._nobody)
        try:
            value = signer.unsign(token).decode("ascii")
        except BadSignature:
            return None
        if client_id not in self._verifiers:  # verified against the dummy: never valid
            return None
        # Signed by us: now, and only now, the claims are read.
        claims = json.loads(_unb64(value.partition(".")[2]))
        expires = claims.get("exp")
        if not isinstance(expires, int) or expires <= self.clock():
            return None
        if not hmac.compare_digest(str(claims.get("aud", "")).encode(), audience.encode()):
            return None
        return client_id
