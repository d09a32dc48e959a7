"""Comparing secrets: in constant time, over digests, against plain or hashed stored forms.

Every comparison is over SHA-256 digests (fixed length, so neither the content
nor the length of a secret leaks) with :func:`hmac.compare_digest`, and every
accepted secret is compared, not just the first that matches. Because a
digest is compared anyway, a host may store a secret as its digest
(``"sha256:<hex>"``) instead of the secret itself: both forms cost the same.

SHA-256 (not a slow password hash) is the right hash here: these are machine
secrets of at least 16 random characters, which no dictionary holds, and
they are checked on every delivery (GitHub and Stripe store API tokens this way).

.. versionadded:: 0.3
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from collections.abc import Sequence

__all__ = ["HASH_PREFIX", "digest", "digests", "hashed", "matches_any", "stored_digest"]

#: A stored secret that starts with this is the hex SHA-256 digest of the secret.
HASH_PREFIX = "sha256:"


def digest(value: str | bytes) -> bytes:
    """The SHA-256 digest of a secret as presented."""
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).digest()


def hashed(secret: str) -> str:
    """The form a host may store instead of ``secret``: ``"sha256:<hex>"``."""
    return HASH_PREFIX + digest(secret).hex()


def stored_digest(stored: str) -> bytes:
    """The digest a stored secret stands for: ``"sha256:<hex>"`` is one already,
    anything else is the secret itself.

    :raises ValueError: ``sha256:`` followed by anything but 64 hex digits.
    """
    if stored.startswith(HASH_PREFIX):
        value = bytes.fromhex(stored.removeprefix(HASH_PREFIX))
        if len(value) != hashlib.sha256().digest_size:
            raise ValueError("a sha256: secret needs 64 hex digits")
        return value
    return digest(stored)


def digests(secrets: Iterable[str]) -> tuple[bytes, ...]:
    """The digests :func:`matches_any` compares, computed once per set of stored secrets."""
    return tuple(stored_digest(secret) for secret in secrets)


def matches_any(given: str | bytes, accepted: Sequence[bytes]) -> bool:
    """Compare ``given`` with every accepted digest in constant time.

    The loop never stops early, so the time taken does not depend on which
    secret matched.

    :param accepted: from :func:`digests`.
    """
    given_digest = digest(given)
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(given_digest, candidate)
    return found
