"""What the log page's filter form asks for, read from a query string and checked.

Pure: no request, no database. Times are read and shown in the page's zone
(``POSWEB_DASHBOARD_TIMEZONE``) and kept as the inbox's naive UTC.

.. versionadded:: 0.2
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import re
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence

from ..auth.credentials import is_merchant_name
from ..config import DashboardSettings
from ..durations import human
from ..events import EVENTS
from ..inbox import MAX_ID
from ..inbox import STATUSES
from ..inbox import Filter

__all__ = ["FAILED", "Query", "form_time", "pretty_json", "read_id", "read_query"]

#: What "replay the failed ones" means: failed, and dead (failed with no attempt left).
FAILED = ("failed", "dead")
#: Longest text searched for, in characters.
MAX_TEXT = 200
#: How a time is written in the form (``<input type="datetime-local">``).
INPUT_FORMAT = "%Y-%m-%dT%H:%M"
#: A delivery id as a form or query string gives it: ASCII digits, at most as
#: many as :data:`~flask_posweb.inbox.MAX_ID` has. Not ``str.isdigit``, which
#: takes ``"²"`` (that ``int`` refuses), nor ``int`` alone, which refuses more
#: than 4,300 digits with a ValueError.
_ID = re.compile(rf"[0-9]{{1,{len(str(MAX_ID))}}}")


class Args(t.Protocol):
    """A query string: werkzeug's ``MultiDict`` or anything with its two readers."""

    def get(self, key: str, default: str = ...) -> str | None: ...

    def getlist(self, key: str) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class Query:
    """One reading of the filter form: the filter, and the form's values to show again."""

    statuses: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    #: Merchants' names; ``None`` is the app's own credentials (``-`` in the form).
    merchants: tuple[str | None, ...] = ()
    #: Naive UTC, as the inbox keeps times.
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str = ""
    #: Keyset paging: only ids below this.
    before: int | None = None
    #: The times as typed (shown again in the form).
    since_text: str = ""
    until_text: str = ""
    #: Why the query was refused; nothing is listed while there are any.
    errors: tuple[str, ...] = ()

    def filter(
        self,
        statuses: Sequence[str] | None = None,
        merchants: Sequence[str | None] | None = None,
    ) -> Filter:
        """The inbox filter; ``statuses`` or ``merchants`` replace the chosen ones
        (counts, replay)."""
        return Filter(
            self.statuses if statuses is None else statuses,
            self.events,
            self.since,
            self.until,
            text=self.text or None,
            merchant=self.merchants if merchants is None else merchants,
        )

    @property
    def failed(self) -> tuple[str, ...]:
        """The statuses a replay of "the failed ones" takes, among those chosen."""
        return tuple(s for s in FAILED if not self.statuses or s in self.statuses)

    def args(self, **changes: t.Any) -> dict[str, t.Any]:
        """The query string of this query, with ``changes`` (``None`` drops a key)."""
        values: dict[str, t.Any] = {
            "status": list(self.statuses),
            "event": list(self.events),
            "merchant": [m or "-" for m in self.merchants],
            "since": self.since_text,
            "until": self.until_text,
            "text": self.text,
            "before": self.before,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value not in (None, "", [])}

    @property
    def narrowed(self) -> bool:
        """Whether any filter is set (paging aside)."""
        return bool(
            self.statuses or self.events or self.merchants or self.since or self.until or self.text
        )


def read_query(args: Args, settings: DashboardSettings, now: dt.datetime) -> Query:
    """Read and check the filter form.

    :param now: naive UTC; the end of a range left open.
    """
    errors: list[str] = []
    statuses = _chosen(args.getlist("status"), STATUSES, "status", errors)
    events = _chosen(args.getlist("event"), list(EVENTS), "event", errors)
    merchants = _merchants(args.getlist("merchant"), errors)
    since_text = (args.get("since") or "").strip()
    until_text = (args.get("until") or "").strip()
    since = _moment(since_text, settings.timezone, "From", errors)
    until = _moment(until_text, settings.timezone, "To", errors, end=True)
    if since is not None and until is not None and since >= until:
        errors.append("“From” must be earlier than “to”.")
    text = (args.get("text") or "").strip()
    if len(text) > MAX_TEXT:
        errors.append(f"Search for at most {MAX_TEXT} characters.")
    elif text:
        _check_search_range(since, until or now, settings.search_range, errors)
    before = _positive(args.get("before"), errors)
    # Shown again as the form's inputs take them, in the page's zone.
    since_text = since_text if since is None else form_time(since, settings.timezone)
    until_text = until_text if until is None else form_time(until, settings.timezone)
    return Query(
        statuses,
        events,
        merchants,
        since,
        until,
        text,
        before,
        since_text,
        until_text,
        tuple(errors),
    )


def form_time(moment: dt.datetime, zone: dt.tzinfo) -> str:
    """A naive UTC time as a ``datetime-local`` input's value in ``zone``."""
    local = moment.replace(tzinfo=dt.timezone.utc).astimezone(zone)
    return local.strftime(INPUT_FORMAT + (":%S" if local.second else ""))


def _chosen(
    values: list[str], allowed: Sequence[str], what: str, errors: list[str]
) -> tuple[str, ...]:
    values = [v for v in values if v]
    for value in values:
        if value not in allowed:
            errors.append(f"There is no {what} {value!r}.")
    return tuple(dict.fromkeys(v for v in values if v in allowed))


def _merchants(values: list[str], errors: list[str]) -> tuple[str | None, ...]:
    """Merchants' names as typed (``-``: the app's own); a name that cannot be
    one is refused, never looked for."""
    chosen: list[str | None] = []
    for value in (v.strip() for v in values):
        if value == "-":
            chosen.append(None)
        elif is_merchant_name(value):
            chosen.append(value)
        elif value:
            errors.append(
                f"{value[:70]!r} is not a merchant's name (letters, digits, - and _, "
                "at most 64; - for the app's own)."
            )
    return tuple(dict.fromkeys(chosen))


def _moment(
    text: str, zone: dt.tzinfo, label: str, errors: list[str], *, end: bool = False
) -> dt.datetime | None:
    """A time typed in the form, as naive UTC. A date alone is its midnight, or
    the next one for the end of a range (``to 2026-11-20`` includes that day)."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        errors.append(f"“{label}” is not a time such as 2026-11-20 08:30 or a date 2026-11-20.")
        return None
    try:
        if end and len(text) == len("2026-11-20"):
            moment += dt.timedelta(days=1)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except OverflowError:  # the day after 9999-12-31, or before year 1 in UTC
        errors.append(f"“{label}” is at the edge of the calendar: choose a time in it.")
        return None


def _check_search_range(
    since: dt.datetime | None, until: dt.datetime, longest: float, errors: list[str]
) -> None:
    """A text search reads every body in its range: refuse one without bounds."""
    if since is None or (until - since).total_seconds() > longest:
        errors.append(
            "Searching the bodies reads every delivery in the time range: set “from” "
            f"(and “to”) to a range of at most {human(longest)}."
        )


def read_id(text: str | None) -> int | None:
    """``text`` as a delivery id the store can hold (1 to
    :data:`~flask_posweb.inbox.MAX_ID`), or ``None``: checked before it
    reaches the database, which would fail on a larger one."""
    if text is None or not _ID.fullmatch(text):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def _positive(text: str | None, errors: list[str]) -> int | None:
    if not text:
        return None
    found = read_id(text)
    if found is None:
        errors.append("The page asked for is not a delivery id.")
    return found


def pretty_json(raw: bytes) -> str | None:
    """A JSON body indented for reading, numbers exactly as sent (DealPOS's money
    is decimal); ``None`` when it is not JSON."""
    try:
        return "\n".join(_lines(json.loads(raw, parse_float=decimal.Decimal), ""))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None  # not JSON, or nested past what a page can show


def _lines(value: t.Any, indent: str, key: str = "", last: bool = True) -> list[str]:
    head, comma, inner = f"{indent}{key}", "" if last else ",", indent + "  "
    if isinstance(value, Mapping) and value:
        items = list(value.items())
        lines = [head + "{"]
        for n, (k, v) in enumerate(items):
            name = json.dumps(k, ensure_ascii=False) + ": "
            lines += _lines(v, inner, name, n == len(items) - 1)
        return [*lines, indent + "}" + comma]
    if isinstance(value, list) and value:
        lines = [head + "["]
        for n, item in enumerate(value):
            lines += _lines(item, inner, "", n == len(value) - 1)
        return [*lines, indent + "]" + comma]
    if isinstance(value, decimal.Decimal):
        return [head + str(value) + comma]
    return [head + json.dumps(value, ensure_ascii=False) + comma]
