"""Lenient marshmallow fields for DealPOS's drifting payloads.

DealPOS writes the same concept in several shapes (see docs/events.rst):
dates with or without time, zone and 1-7 fractional digits; money as JSON
numbers that must never become floats; ids and phone numbers sometimes as
numbers. These fields accept every shape seen and normalise it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import typing as t

from marshmallow import fields

__all__ = [
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "Count",
    "DateOrDateTime",
    "Money",
    "PosDate",
    "Text",
    "in_bounds",
    "parse_pos_datetime",
]

#: Numbers have at most this many significant digits ...
MAX_DIGITS = 30
#: ... and a decimal exponent within plus or minus this (``1E+30``, ``1E-30``).
#: Rupiah amounts reach 10^12 and more: room to spare, while no field's cost
#: grows with an exponent an attacker chose (``1e1000000`` as an int is a
#: million digits, and costs seconds to make).
MAX_EXPONENT = 30

_LIMIT = 10 ** (MAX_EXPONENT + 1)


def in_bounds(value: int | decimal.Decimal) -> bool:
    """Whether a number is finite and within :data:`MAX_DIGITS` and :data:`MAX_EXPONENT`.

    Checked on the parsed value, before any conversion (to ``int`` or a new
    ``Decimal``), so that the check itself is cheap whatever the number.
    """
    if isinstance(value, int):  # compared first: an int may have thousands of digits
        return -_LIMIT < value < _LIMIT and in_bounds(decimal.Decimal(value))
    if not value.is_finite():
        return False
    if value.is_zero():
        return True
    if not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        return False
    digits = value.as_tuple().digits
    significant = len(digits)
    while significant > 1 and digits[significant - 1] == 0:
        significant -= 1
    return significant <= MAX_DIGITS


_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,7}))?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)

#: .NET's ``DateTime.MinValue``: DealPOS's way of saying "no date".
_NO_DATE = dt.date(1, 1, 1)


def _zone(text: str) -> dt.tzinfo:
    if text == "Z":
        return dt.timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def parse_pos_datetime(text: str) -> dt.date | dt.datetime | None:
    """Parse any date shape DealPOS sends.

    ``2020-07-01`` gives a :class:`~datetime.date`; ``2021-08-20T10:28:56.6691072``
    (1-7 fractional digits, no zone) a naive :class:`~datetime.datetime`;
    ``...Z`` or ``...+07:00`` an aware one. ``0001-01-01T00:00:00`` gives ``None``.

    :raises ValueError: the text is not one of those shapes, or not a real date.
    """
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    date = dt.date.fromisoformat(match["date"])
    if match["h"] is None:
        return None if date == _NO_DATE else date
    # .NET writes 100 ns ticks (7 digits); Python keeps microseconds (6).
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    value = dt.datetime(
        date.year, date.month, date.day,
        int(match["h"]), int(match["m"]), int(match["s"] or 0), micro,
        tzinfo=_zone(match["tz"]) if match["tz"] else None,
    )  # fmt: skip
    if date == _NO_DATE and value.time() == dt.time(0):
        return None
    return value


class DateOrDateTime(fields.Field[t.Any]):
    """A date or a date-time in any of DealPOS's shapes; see :func:`parse_pos_datetime`.

    An empty string or ``0001-01-01T00:00:00`` loads as ``None`` (unless the
    field is marked non-empty, where ``""`` is an error).
    """

    default_error_messages = {
        "invalid": "Not a valid date or date-time.",
        "empty": "Must not be empty.",
    }

    def __init__(self, *, non_empty: bool = False, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.non_empty = non_empty

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any, **kwargs: t.Any) -> t.Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if not value.strip():
            if self.non_empty:
                raise self.make_error("empty")
            return None
        try:
            return self._convert(parse_pos_datetime(value))
        except ValueError as exc:
            raise self.make_error("invalid") from exc

    def _convert(self, value: dt.date | dt.datetime | None) -> dt.date | dt.datetime | None:
        return value

    def _serialize(self, value: t.Any, attr: str | None, obj: t.Any, **kwargs: t.Any) -> t.Any:
        return None if value is None else value.isoformat()


class PosDate(DateOrDateTime):
    """A calendar date. A date-time (any shape) loads as its date part."""

    default_error_messages = {"invalid": "Not a valid date."}

    def _convert(self, value: dt.date | dt.datetime | None) -> dt.date | None:
        return value.date() if isinstance(value, dt.datetime) else value


OUT_OF_RANGE = (
    f"Number out of range: at most {MAX_DIGITS} significant digits and an exponent "
    f"within ±{MAX_EXPONENT}."
)


class Money(fields.Decimal):
    """A JSON number as :class:`~decimal.Decimal`, never a float, always finite
    and within :func:`in_bounds`.

    The body is parsed with ``parse_float=Decimal``, so no precision is lost
    before this field sees it. Booleans are refused (``True`` is not 1 here).
    """

    default_error_messages = {"range": OUT_OF_RANGE}

    def _validated(self, value: t.Any) -> decimal.Decimal:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, (int, decimal.Decimal)) and not in_bounds(value):
            raise self.make_error("range")
        number = super()._validated(value)
        if not in_bounds(number):  # a string such as "1E+999999999"
            raise self.make_error("range")
        return number


class Count(fields.Integer):
    """A whole number. ``3.0`` is accepted; ``3.5`` is refused, not truncated.

    Bounds are checked before the conversion to ``int`` (see :func:`in_bounds`).
    """

    default_error_messages = {"invalid": "Not a valid integer.", "range": OUT_OF_RANGE}

    def _validated(self, value: t.Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if type(value) is int:
            number: decimal.Decimal | int = value
        else:
            try:
                number = decimal.Decimal(str(value).strip())
            except decimal.InvalidOperation as exc:
                raise self.make_error("invalid") from exc
            if not number.is_finite() or number != number.to_integral_value():
                raise self.make_error("invalid")
        if not in_bounds(number):
            raise self.make_error("range")
        return int(number)


class Text(fields.String):
    """A string; a JSON number is kept as its text (ids and phones drift to numbers)."""

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any, **kwargs: t.Any) -> t.Any:
        if isinstance(value, (int, decimal.Decimal)) and not isinstance(value, bool):
            return str(value)
        return super()._deserialize(value, attr, data, **kwargs)
