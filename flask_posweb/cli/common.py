"""What the commands share: their group, option types, the filter options, formats.

Every error is one line through click: exit code 2 for a usage mistake, 1 for
a failure. Times are shown in UTC, and say so.

.. versionadded:: 0.3
    (0.1 and 0.2 kept the whole command line in ``cli.py``.)
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import typing as t

import click
from flask.cli import AppGroup

from ..auth.credentials import is_merchant_name
from ..durations import parse_duration
from ..events import EVENTS
from ..exceptions import PosWebError
from ..exceptions import StoreError
from ..inbox import MAX_ID
from ..inbox import STATUSES
from ..inbox import Delivery
from ..inbox import utcnow
from ..state import PosWebState
from ..state import get_state

__all__ = [
    "DELIVERY_ID",
    "LIMIT",
    "PosWebGroup",
    "duration",
    "filter_options",
    "inbox_state",
    "parse_moment",
    "public_url",
    "summary",
    "when",
    "when_iso",
]

#: A delivery id given on the command line: checked before it reaches the database.
DELIVERY_ID = click.IntRange(1, MAX_ID)
#: How many rows to show: a positive number the database can take.
LIMIT = click.IntRange(1, MAX_ID)


class PosWebGroup(AppGroup):
    """``flask posweb``: Flask's command group, with the library's own errors
    as one line (exit code 1)."""

    def invoke(self, ctx: click.Context) -> t.Any:
        try:
            return super().invoke(ctx)
        except StoreError as exc:  # the driver's reason: a refused password, a full disk
            message = f"The inbox's database: {exc.reason}" if exc.reason else str(exc)
            raise click.ClickException(message) from None
        except PosWebError as exc:
            raise click.ClickException(str(exc)) from None


def when(moment: dt.datetime | None) -> str:
    """A stored (naive UTC) time, with its zone."""
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def when_iso(moment: dt.datetime) -> str:
    """A stored (naive UTC) time in ISO 8601, with its zone (JSON)."""
    return moment.replace(tzinfo=dt.timezone.utc).isoformat()


MOMENT_FORMS = (
    "an ISO date or date-time (UTC unless it has a zone, e.g. 2026-11-29T08:00+07:00) "
    "or a duration ago (90s, 10m, 2h, 7d)"
)


def parse_moment(text: str) -> dt.datetime:
    """An ISO date/date-time (UTC unless it has a zone), or a duration ago (``2h``)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return utcnow() - dt.timedelta(seconds=parse_duration(text))
        except (ValueError, OverflowError):
            raise click.BadParameter(f"{text!r} is not {MOMENT_FORMS}.") from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+07:00 is before year 1 in UTC
            raise click.BadParameter(f"{text!r} is outside the calendar in UTC.") from None
    return moment


def duration(text: str) -> float:
    """A duration option (``30d``), in seconds: one that can be counted back
    from now (``prune --older-than``)."""
    try:
        seconds = parse_duration(text)
        utcnow() - dt.timedelta(seconds=seconds)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    except OverflowError:
        raise click.BadParameter(f"{text!r} reaches back before the calendar begins.") from None
    return seconds


class Choice(click.Choice[str]):
    """A choice whose error names the closest value."""

    def convert(
        self, value: t.Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> t.Any:
        if value in self.choices:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        self.fail(f"{value!r} is not one of them.{hint}", param, ctx)


class MerchantName(click.ParamType[str | None]):
    """A merchant's name, or ``-`` for the app's own (``None``)."""

    name = "merchant"

    def convert(
        self, value: t.Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> str | None:
        if value == "-" or value is None:
            return None
        if not is_merchant_name(value):
            self.fail(
                f"{value!r} is not a merchant's name: letters, digits, - and _, at most 64 "
                "(or '-' for the app's own).",
                param,
                ctx,
            )
        return str(value)


F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def filter_options(command: F) -> F:
    """The options that choose deliveries, shared by ``list`` and ``replay``."""
    options = [
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=Choice(STATUSES),
            help="Only this status (repeatable).",
        ),
        click.option(
            "--event",
            "events",
            multiple=True,
            type=Choice(list(EVENTS)),
            metavar="EVENT",
            help="Only this event (repeatable).",
        ),
        click.option(
            "--since",
            type=parse_moment,
            metavar="WHEN",
            help=(
                "Received at or after WHEN: an ISO date or date-time (UTC unless zoned), "
                "or a duration ago (2h, 7d)."
            ),
        ),
        click.option(
            "--until", type=parse_moment, metavar="WHEN", help="Received before WHEN (same forms)."
        ),
        click.option(
            "--merchant",
            "merchants",
            multiple=True,
            type=MerchantName(),
            metavar="NAME",
            help="Only this merchant's (repeatable); '-' for the app's own credentials'.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def summary(delivery: Delivery) -> dict[str, t.Any]:
    """A delivery as ``list --json`` and ``show --json`` print it."""

    def iso(moment: dt.datetime | None) -> str | None:
        return None if moment is None else when_iso(moment)

    return {
        "id": delivery.id,
        "merchant": delivery.merchant,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "received_at": iso(delivery.received_at),
        "next_attempt_at": iso(delivery.next_attempt_at),
        "replay": delivery.replay,
        "leased_by": delivery.locked_by,
        "missing": delivery.missing or [],
        "failed_receivers": delivery.failed_receivers,
    }


def public_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A public URL to print for DealPOS: with its scheme, or it would be pasted as is."""
    if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise click.BadParameter(f"{value!r} is not a URL like https://shop.example.com.")
    return value


def inbox_state() -> PosWebState:
    """The app's state, for commands that need its inbox; a one-line error without one."""
    state = get_state()
    if state.inbox is None:
        raise click.ClickException("This command needs the inbox: POSWEB_INBOX is off.")
    return state
