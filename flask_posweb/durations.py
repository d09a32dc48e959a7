"""Durations as people write them: ``90s``, ``10m``, ``12h``, ``30d``, ``2w`` or ``1d12h``.

One parser for the configuration and the command line, and one way of saying a
duration back (:func:`human`, for the CLI and the log page), so that a duration
means the same everywhere.

.. versionadded:: 0.2
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["UNITS", "human", "parse_duration", "plural", "to_seconds"]

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)

#: Seconds per unit letter.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: numbers each followed by a unit (s, m, h, d, w).

    :raises ValueError: ``text`` is not such a duration; the message shows the forms.
    """
    parts = _PART.findall(text)
    if not parts or _PART.sub("", text).strip():
        raise ValueError(f"{text!r} is not a duration like '90s', '10m', '12h', '30d' or '1d12h'.")
    return sum(float(number) * UNITS[unit.lower()] for number, unit in parts)


_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")


def to_seconds(value: object, *, numbers: bool = True) -> float:
    """A duration setting in seconds: a :class:`~datetime.timedelta`, a string
    such as ``"30d"`` or, where ``numbers`` allows it, a number of seconds,
    given as a number or as a string of one (``"20"``: environment variables
    are strings).

    :raises ValueError: anything else, with the accepted forms in the message.
    :raises TypeError: a number where ``numbers`` is false (is ``30`` seconds or days?).
    """
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        if not numbers:
            raise TypeError(
                f"{value!r} has no unit: write '{value.strip()}d' or '{value.strip()}s'."
            )
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not numbers:
            raise TypeError(f"{value!r} has no unit: write timedelta(days={value}) or '{value}d'.")
        return float(value)
    raise ValueError(
        f"{value!r} is not a duration: use seconds, a timedelta or a string like '10m'."
    )


def plural(count: int, noun: str) -> str:
    """``1 delivery``, ``2 deliveries``."""
    if count == 1:
        return f"1 {noun}"
    consonant_y = noun.endswith("y") and noun[-2:-1] not in tuple("aeiou")
    return f"{count} {noun[:-1] + 'ies' if consonant_y else noun + 's'}"


def human(seconds: float) -> str:
    """A duration as people say it: ``30 days``, ``12 hours``, ``90 seconds``."""
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return plural(int(seconds // size), unit)
    return plural(int(seconds), "second")
