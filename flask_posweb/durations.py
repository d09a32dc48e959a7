"""Durations as people write them: ``90s``, ``10m``, ``12h``, ``30d``, ``2w`` or ``1d12h``.

One parser for the configuration and the command line, so that a duration
means the same everywhere.

.. versionadded:: 0.2
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["UNITS", "parse_duration", "to_seconds"]

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


def to_seconds(value: object, *, numbers: bool = True) -> float:
    """A duration setting in seconds: a :class:`~datetime.timedelta`, a string
    such as ``"30d"`` or, where ``numbers`` allows it, a number of seconds.

    :raises ValueError: anything else, with the accepted forms in the message.
    :raises TypeError: a number where ``numbers`` is false (is ``30`` seconds or days?).
    """
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not numbers:
            raise TypeError(f"{value!r} has no unit: write timedelta(days={value}) or '{value}d'.")
        return float(value)
    raise ValueError(
        f"{value!r} is not a duration: use seconds, a timedelta or a string like '10m'."
    )
