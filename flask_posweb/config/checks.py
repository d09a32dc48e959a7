"""Checks of single configuration values: each says which key is wrong and how to fix it.

.. versionadded:: 0.3
    (0.1 and 0.2 kept these in ``config.py``.)
"""

from __future__ import annotations

import collections.abc as c
import datetime as dt
import difflib
import os
import typing as t
import warnings
import zoneinfo

from ..durations import to_seconds
from ..exceptions import ConfigurationError
from ..exceptions import PosWebWarning
from .defaults import DEFAULTS
from .defaults import MIN_SECRET_LENGTH
from .defaults import RETENTION_KEYS

__all__ = [
    "database_url",
    "duration",
    "flag",
    "number",
    "pairs",
    "strings",
    "strong",
    "timezone",
    "warn_unknown",
]

Config = c.Mapping[str, t.Any]


def warn_unknown(config: Config) -> None:
    """A misspelt key is otherwise silently ignored (``POSWEB_MAX_ATTEMPT = 3``)."""
    # Compared without the shared prefix, which would make any two keys look alike.
    known = {key.removeprefix("POSWEB_"): key for key in DEFAULTS}
    for key in config:
        if key.startswith("POSWEB_") and key not in DEFAULTS:
            close = difflib.get_close_matches(key.removeprefix("POSWEB_"), known, n=1)
            hint = f"; did you mean {known[close[0]]!r}?" if close else ""
            warnings.warn(f"Unknown setting {key!r}{hint}", PosWebWarning, stacklevel=5)


def flag(config: Config, key: str) -> bool:
    """A switch: ``True`` or ``False``. A string is refused: ``"false"`` from an
    environment variable would turn it on."""
    value = config[key]
    if not isinstance(value, bool):
        raise ConfigurationError(f"{key} must be True or False, not {value!r}.")
    return value


def number(config: Config, key: str) -> float:
    """A positive number."""
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{key} must be a positive number, not {value!r}.")
    return float(value)


def duration(config: Config, key: str, *, zero: bool = False) -> float:
    """A duration in seconds (see :func:`~flask_posweb.durations.to_seconds`);
    the retention keys must say their unit."""
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


def strings(key: str, value: t.Any) -> list[str]:
    """A string or a list of non-empty strings."""
    items = [value] if isinstance(value, str) else list(value or ())
    if not all(isinstance(item, str) and item for item in items):
        raise ConfigurationError(f"{key} must hold non-empty strings.")
    return items


def strong(key: str, values: c.Iterable[str]) -> None:
    """Secrets long enough that guessing is hopeless; the message shows how to make one."""
    for value in values:
        if len(value) < MIN_SECRET_LENGTH:
            # The fix is shown, never a key: an error message may end up in a log.
            raise ConfigurationError(
                f"{key} holds a secret of {len(value)} characters; use at least "
                f'{MIN_SECRET_LENGTH}, e.g. one made by: python -c "import secrets; '
                f'print(secrets.token_urlsafe(32))"'
            )


def pairs(config: Config, key: str) -> dict[str, tuple[str, ...]]:
    """``{"name": "secret" | [secrets]}`` or ``[("name", "secret"), ...]``: names
    to their strong secrets."""
    value = config[key] or {}
    items = value.items() if isinstance(value, c.Mapping) else value
    found: dict[str, list[str]] = {}
    try:
        for name, secrets_ in items:
            found.setdefault(strings(key, name)[0], []).extend(strings(key, secrets_))
    except (TypeError, ValueError, IndexError):
        raise ConfigurationError(
            f"{key} must map names to secrets, e.g. {{'dealpos': 'secret'}}."
        ) from None
    for accepted in found.values():
        strong(key, accepted)
    return {name: tuple(secrets) for name, secrets in found.items()}


def database_url(value: t.Any, instance_path: str, testing: bool) -> str | None:
    """The inbox's URL: the default file, or a relative SQLite path, in the
    instance folder (as Flask-SQLAlchemy does); ``None`` for a private one.

    SQLAlchemy is imported only to read a URL given: an app without an inbox
    never gets here.
    """
    if value is None:
        if testing:
            return None
        return "sqlite:///" + os.path.join(instance_path, "posweb.sqlite3")
    import sqlalchemy as sa  # only apps with an inbox load SQLAlchemy

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


def timezone(key: str, value: t.Any) -> dt.tzinfo:
    """A time zone: a name such as ``"Asia/Jakarta"``, or a ``tzinfo``."""
    if isinstance(value, dt.tzinfo):
        return value
    if value == "UTC":  # needs no time zone database
        return dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, TypeError, ValueError):
        raise ConfigurationError(
            f"{key} must be a time zone name such as 'Asia/Jakarta' (or a tzinfo), not {value!r}."
        ) from None
