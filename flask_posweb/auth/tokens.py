"""OAuth 2.0 client credentials (RFC 6749 section 4.4) without server state.

DealPOS calls the merchant's ``ServerAuthenticationURL`` for a token, then sends
it as ``Authorization: Bearer ...`` with each webhook. Tokens here are signed
with itsdangerous' :class:`~itsdangerous.URLSafeTimedSerializer` (which Flask
ships), not stored: any process or machine with the same signing keys
verifies them, and a list of keys rotates them (newest last, the older still
verify).

A token's claims name its merchant, its client and its audience (the token
URL of the server that issued it, or ``POSWEB_TOKEN_AUDIENCE``), and hold a
fingerprint of the client secret it was issued for: a token of merchant A is
refused at B, a staging server's token in production, and removing a client
secret revokes the tokens issued for it. The fingerprint is derived from the
secret's digest, so a host that stores only digests can check it too.

Signatures are checked before anything in a token is decoded (itsdangerous
verifies first, then decompresses and parses), and a token's length is
bounded before that: a forged token costs one HMAC.

Tokens issued by Flask-PosWeb 0.2 (the app's own clients only) are still
accepted until they expire (:meth:`TokenAuthority.read_v2`): DealPOS holds a
token for its lifetime, and a 401 is final for it. Removed in 0.4.

.. versionadded:: 0.1
.. versionchanged:: 0.3
    Signed with ``URLSafeTimedSerializer``; the claims carry the merchant.
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
from collections.abc import Sequence

from itsdangerous import BadSignature
from itsdangerous import Signer
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

__all__ = ["MAX_TOKEN_LENGTH", "Claims", "TokenAuthority", "fingerprint"]

_SALT = "flask-posweb.access-token.v3"
_V2_SALT = "flask-posweb.access-token.v2"
#: The longest base64 client id of a 0.2 token.
_V2_MAX_CLIENT = 256
#: Longer tokens are refused before any work (ours are about 200 characters).
MAX_TOKEN_LENGTH = 1024


def fingerprint(secret_digest: bytes) -> str:
    """What a token records of the client secret it was issued for: 16 hex
    digits of an HMAC of the secret's SHA-256 digest (never the secret)."""
    return hmac.new(secret_digest, b"flask-posweb token", hashlib.sha256).hexdigest()[:16]


class Claims(t.NamedTuple):
    """What a verified token says."""

    #: The merchant the token was issued to (``None``: the app's own client).
    merchant: str | None
    client_id: str
    #: :func:`fingerprint` of the client secret it was issued for.
    fingerprint: str


class TokenAuthority:
    """Issues and reads access tokens.

    :param signing_keys: server keys, newest last; tokens are signed with the newest.
    :param ttl: token lifetime in seconds.
    :param clock: returns the current Unix time; tests pass their own.
    """

    def __init__(
        self,
        signing_keys: Sequence[str | bytes],
        ttl: float = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signing_keys = tuple(signing_keys)
        self.ttl = int(ttl)
        self.clock = clock
        authority = self

        class Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(authority.clock())

        keys = [key.encode() if isinstance(key, str) else key for key in self.signing_keys]
        self._serializer = URLSafeTimedSerializer(keys, salt=_SALT, signer=Signer)

    def issue(
        self, merchant: str | None, client_id: str, secret_digest: bytes, audience: str
    ) -> dict[str, t.Any]:
        """A token response body (RFC 6749 section 5.1) for an authenticated client.

        :param secret_digest: the digest of the secret the client authenticated with.
        """
        claims = {"m": merchant, "c": client_id, "f": fingerprint(secret_digest), "aud": audience}
        token = self._serializer.dumps(claims)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}

    def read(self, token: str, audience: str) -> Claims | None:
        """The claims of a valid, unexpired token for ``audience``; ``None`` otherwise.

        The client secret's fingerprint is the caller's to check: it needs the
        client's current secrets.
        """
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            return None
        try:
            claims = self._serializer.loads(token, max_age=self.ttl)
        except (BadSignature, ValueError):  # also expired (SignatureExpired)
            return None
        if not isinstance(claims, dict):
            return None
        merchant, client, mark = claims.get("m"), claims.get("c"), claims.get("f")
        if not isinstance(client, str) or not isinstance(mark, str):
            return None
        if merchant is not None and not isinstance(merchant, str):
            return None
        if not hmac.compare_digest(str(claims.get("aud", "")).encode(), audience.encode()):
            return None
        return Claims(merchant, client, mark)

    def read_v2(
        self, token: str, audience: str, secrets: Callable[[str], Sequence[str]]
    ) -> str | None:
        """The client id of a valid, unexpired token that Flask-PosWeb 0.2 issued
        (``<client id>.<claims>.<signature>``, its key derived from the signing
        key and the client's secret); ``None`` otherwise.

        :param secrets: the plain secrets of one of the app's own OAuth clients.

        .. deprecated:: 0.3
            Accepted for an upgrade's sake only; removed in 0.4.
        """
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or token.count(".") != 2:
            return None
        encoded_client = token.partition(".")[0]
        if len(encoded_client) > _V2_MAX_CLIENT:
            return None
        try:
            client_id = _unb64(encoded_client).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        accepted = secrets(client_id)
        # An unknown client is checked against a dummy key: its timing is a known one's.
        keys = [_v2_key(k, client_id, s) for k in self.signing_keys for s in accepted]
        signer = Signer(
            keys or [b"\0unknown-client"],
            salt=_V2_SALT,
            key_derivation="hmac",
            digest_method=hashlib.sha256,
        )
        try:
            value = signer.unsign(token).decode("ascii")
        except BadSignature:
            return None
        if not keys:
            return None
        claims = json.loads(_unb64(value.partition(".")[2]))  # signed by us: read now only
        expires = claims.get("exp")
        if not isinstance(expires, int) or expires <= self.clock():
            return None
        if not hmac.compare_digest(str(claims.get("aud", "")).encode(), audience.encode()):
            return None
        return client_id


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _v2_key(signing_key: str | bytes, client_id: str, secret: str) -> bytes:
    key = signing_key.encode() if isinstance(signing_key, str) else signing_key
    return hmac.new(key, f"{client_id}\0{secret}".encode(), hashlib.sha256).digest()
