"""``flask posweb ...``: the commands of the blueprint's CLI group.

They exist on every app that registered the blueprint, and only there. Every
error is one line through click: exit code 2 for a usage mistake, 1 for a
failure. Times are shown in UTC, and say so.

.. versionadded:: 0.1
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import signal as os_signal
import threading
import typing as t
import urllib.parse

import click
import sqlalchemy as sa
from flask import Blueprint
from flask import current_app
from flask.cli import AppGroup
from werkzeug.routing import MapAdapter

from . import sending
from .dispatch import replay
from .durations import parse_duration
from .events import EVENTS
from .exceptions import PosWebError
from .inbox import STATUSES
from .inbox import Delivery
from .inbox import Filter
from .inbox import utcnow
from .inbox.database import driver_reason
from .state import PosWebState
from .state import get_state
from .web.routes import served_routes

__all__ = ["parse_moment", "register_commands"]


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


def when(moment: dt.datetime | None) -> str:
    """A stored (naive UTC) time, with its zone."""
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


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
        except ValueError:
            raise click.BadParameter(f"{text!r} is not {MOMENT_FORMS}.") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


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


def _filter_options(command: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
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
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _summary(delivery: Delivery) -> dict[str, t.Any]:
    def iso(moment: dt.datetime | None) -> str | None:
        return None if moment is None else moment.replace(tzinfo=dt.timezone.utc).isoformat()

    return {
        "id": delivery.id,
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


def _base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A public URL to print for DealPOS: with its scheme, or it would be pasted as is."""
    if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise click.BadParameter(f"{value!r} is not a URL like https://shop.example.com.")
    return value


def _state() -> PosWebState:
    """The app's state and inbox, or a one-line error."""
    state = get_state()
    if state.inbox is None:
        raise click.ClickException("This command needs the inbox: POSWEB_INBOX is off.")
    return state


class Group(AppGroup):
    """Turns the library's own errors into one line (exit code 1)."""

    def invoke(self, ctx: click.Context) -> t.Any:
        try:
            return super().invoke(ctx)
        except PosWebError as exc:
            raise click.ClickException(str(exc)) from None
        except sa.exc.SQLAlchemyError as exc:  # the db commands talk to the database directly
            raise click.ClickException(f"The inbox's database: {driver_reason(exc)}") from None


def register_commands(bp: Blueprint) -> None:
    """Attach every command to ``bp.cli`` (``flask posweb ...``)."""
    cli = bp.cli
    cli.__class__ = Group  # AppGroup's behaviour, our error handling
    cli.help = (
        "DealPOS webhooks: URLs to paste, test deliveries, the inbox and its worker, "
        "the OpenAPI description."
    )

    @cli.command("events")
    @click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
    @click.option(
        "--base-url",
        envvar="POSWEB_BASE_URL",
        callback=_base_url,
        help="Public URL of this app (default: SERVER_NAME, else http://localhost:5000, a guess).",
    )
    def events_command(as_json: bool, base_url: str | None) -> None:
        """List every URL to paste into DealPOS: the events, with each one's signal,
        and the loyalty calls that have a provider and the OAuth token URL when
        clients are configured."""
        guessed = base_url is None and not current_app.config.get("SERVER_NAME")
        if guessed:
            click.echo(
                "Warning: no --base-url (or POSWEB_BASE_URL, SERVER_NAME): the URLs below "
                "assume http://localhost:5000.",
                err=True,
            )
        rows = _url_rows(base_url or ("http://localhost:5000" if guessed else None))
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            mark = "  (provisional)" if row.get("provisional") else ""
            extra = f"  {row['signal']}" if row.get("signal") else ""
            click.echo(f"{row['name']:<{width}}  {row['url']}{extra}{mark}")

    @cli.command("openapi")
    @click.option(
        "--output",
        "-o",
        type=click.File("w", encoding="utf-8", lazy=True),
        metavar="FILE",
        help="Write the document to FILE (default: standard output).",
    )
    @click.option(
        "--base-url",
        envvar="POSWEB_BASE_URL",
        callback=_base_url,
        metavar="URL",
        help="Public URL of this app, written as the document's server (default: none; "
        "paths are relative to the host).",
    )
    def openapi_command(output: t.TextIO | None, base_url: str | None) -> None:
        """Write the OpenAPI 3.1 description (JSON) of this app's DealPOS endpoints:
        the events, the loyalty calls and the token URL, with the request schemas
        as enforced here and this configuration's security schemes.

        Needs the 'openapi' extra: pip install 'Flask-PosWeb[openapi]'.
        """
        try:
            from .openapi import openapi_json  # apispec: imported by this command only
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "apispec":
                raise
            raise click.ClickException(
                "This command needs apispec: pip install 'Flask-PosWeb[openapi]'."
            ) from None
        document = openapi_json(current_app, server_url=base_url)
        if output is None:
            click.echo(document, nl=False)
        else:
            output.write(document)

    @cli.command("send")
    @click.argument("event")
    @click.argument("file", type=click.File("rb"), required=False)
    @click.option(
        "--url",
        default="http://127.0.0.1:5000",
        show_default=True,
        help="The running app's base URL, or the endpoint's full URL.",
    )
    @click.option("--key", help="API key to send (default: the first of POSWEB_API_KEYS).")
    @click.option("--timeout", default=30.0, show_default=True, help="Seconds, as DealPOS.")
    def send_command(
        event: str, file: t.BinaryIO | None, url: str, key: str | None, timeout: float
    ) -> None:
        """POST the JSON in FILE (default: the event's built-in sample) to EVENT's URL,
        as DealPOS would.

        EVENT is an event name (flask posweb events) or a loyalty call
        (loyalty_member_points, loyalty_order_complete, loyalty_validate_coupon).
        Credentials come from this app's configuration: the API key, HTTP Basic,
        or an OAuth token fetched from the token URL first.
        """
        body = file.read() if file is not None else sending.sample(event)
        result = sending.send(event, body, url, key=key, timeout=timeout)
        click.echo(f"{result.status} {result.reason}")
        click.echo(result.body.decode("utf-8", "replace"))
        if result.status >= 300:
            raise SystemExit(1)

    @cli.command("worker")
    @click.option("--once", is_flag=True, help="Dispatch what is due now, then exit.")
    @click.option(
        "--relay",
        is_flag=True,
        help=(
            "Celery dispatch: send tasks for due deliveries (stored while the broker was "
            "down, or whose task was lost) instead of dispatching here. For deployments "
            "that set POSWEB_CELERY_RELAY = False."
        ),
    )
    def worker_command(once: bool, relay: bool) -> None:
        """Dispatch due deliveries until stopped; SIGTERM or SIGINT finish the one in hand.

        Safe to run as several processes, on several machines: each delivery is
        leased to one dispatcher at a time. Retention runs here as well.
        """
        from .dispatch.runner import Runner
        from .dispatch.runner import new_owner
        from .dispatch.runner import report_lacking

        state = _state()
        if relay and state.settings.dispatch != "celery":
            raise click.UsageError("--relay is for POSWEB_DISPATCH = 'celery'.")
        runner = Runner(state, new_owner("relay" if relay else "worker"), relay=relay)
        verb = "sent to Celery" if relay else "dispatched"
        for line in report_lacking(state):
            click.echo(f"Warning: {line}", err=True)
        if once:
            count = runner.work()
            runner.housekeep(force=True)
            click.echo(f"{plural(count, 'delivery')} {verb}.")
            return
        stop = threading.Event()
        for signum in (os_signal.SIGTERM, os_signal.SIGINT):
            os_signal.signal(signum, lambda *_: stop.set())
        click.echo(f"Worker {runner.owner} started.")
        runner.run_forever(stop, on_batch=lambda n: click.echo(f"{plural(n, 'delivery')} {verb}."))
        click.echo("Worker stopped.")

    @cli.command("list")
    @_filter_options
    @click.option("--limit", default=50, show_default=True, help="Newest first, at most this many.")
    @click.option("--before", type=int, metavar="ID", help="Only ids below ID (the next page).")
    @click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
    def list_command(
        statuses: tuple[str, ...],
        events: tuple[str, ...],
        since: dt.datetime | None,
        until: dt.datetime | None,
        limit: int,
        before: int | None,
        as_json: bool,
    ) -> None:
        """List stored deliveries, newest first, with the inbox's totals."""
        inbox = _state().require_inbox()
        found = inbox.list(Filter(statuses, events, since, until), limit=limit, before=before)
        if as_json:
            click.echo(json.dumps([_summary(d) for d in found], indent=2))
            return
        for d in found:
            later = f"  next {when(d.next_attempt_at)}" if d.status == "failed" else ""
            click.echo(
                f"{d.id:>8}  {when(d.received_at)}  {d.status:<9}  {d.event:<30}  "
                f"{plural(d.attempts, 'attempt')}{later}"
            )
        totals = ", ".join(f"{n} {status}" for status, n in inbox.counts().items() if n)
        click.echo(f"-- inbox: {totals or 'empty'}")

    @cli.command("show")
    @click.argument("delivery_id", type=int, metavar="ID")
    @click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
    def show_command(delivery_id: int, as_json: bool) -> None:
        """Show one delivery: headers (no credentials), body, errors, every receiver attempt."""
        inbox = _state().require_inbox()
        delivery = inbox.get(delivery_id)
        if delivery is None:
            raise click.ClickException(f"No delivery {delivery_id} in this inbox.")
        attempts = inbox.attempts(delivery_id)
        if as_json:
            details = {
                **_summary(delivery),
                "headers": delivery.headers,
                "body": delivery.raw.decode("utf-8", "replace"),
                "errors": delivery.errors,
                "receivers": [
                    {
                        **a._asdict(),
                        "started_at": a.started_at.replace(tzinfo=dt.timezone.utc).isoformat(),
                    }
                    for a in attempts
                ],
            }
            click.echo(json.dumps(details, indent=2))
            return
        click.echo(f"{'id:':<16} {delivery.id}")
        click.echo(f"{'event:':<16} {delivery.event}")
        click.echo(f"{'status:':<16} {delivery.status}")
        click.echo(f"{'attempts:':<16} {delivery.attempts}")
        click.echo(f"{'received:':<16} {when(delivery.received_at)}")
        if delivery.status == "failed":
            click.echo(f"{'next attempt:':<16} {when(delivery.next_attempt_at)}")
        if delivery.replay:
            click.echo(f"{'replay:':<16} yes")
        if delivery.locked_by:
            click.echo(
                f"{'leased by:':<16} {delivery.locked_by} until {when(delivery.locked_until)}"
            )
        if delivery.missing:
            click.echo(f"{'missing:':<16} {', '.join(delivery.missing)}")
        click.echo("headers:")
        for name, value in delivery.headers.items():
            click.echo(f"  {name}: {value}")
        click.echo("body:\n  " + delivery.raw.decode("utf-8", "replace"))
        if delivery.errors:
            click.echo("errors:\n  " + json.dumps(delivery.errors, indent=2).replace("\n", "\n  "))
        for n, a in enumerate(attempts, 1):
            # A replay restarts the attempt count: the run number tells the lines apart.
            outcome = "ok" if a.ok else "FAILED"
            kind = " after a replay" if a.replay else ""
            click.echo(
                f"run {n}: {a.receiver} {outcome} in {a.duration_ms:.1f} ms at "
                f"{when(a.started_at)} (attempt {a.attempt}{kind})"
            )
            if a.error:
                click.echo("  " + a.error.rstrip().replace("\n", "\n  "))

    @cli.command("replay")
    @click.argument("ids", nargs=-1, type=int, metavar="[ID]...")
    @click.option("--failed", is_flag=True, help="Every failed and dead delivery.")
    @click.option("--rejected", is_flag=True, help="Every rejected delivery (validated again).")
    @_filter_options
    def replay_command(
        ids: tuple[int, ...],
        failed: bool,
        rejected: bool,
        statuses: tuple[str, ...],
        events: tuple[str, ...],
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> None:
        """Dispatch deliveries again, here and now: the IDs given, or those the options choose.

        Processed and unhandled deliveries run every receiver again; failed and
        dead ones the receivers that have not succeeded; rejected ones are
        validated again first. Receivers see event.is_replay.
        """
        chosen = set(statuses) | ({"failed", "dead"} if failed else set())
        chosen |= {"rejected"} if rejected else set()
        which = Filter(tuple(chosen), events, since, until, ids)
        if not which.where():
            raise click.UsageError("Say what to replay: IDs, --failed, --rejected or a filter.")
        state = _state()
        selected = state.require_inbox().ids(which)
        unknown = sorted(set(ids) - set(state.require_inbox().ids(Filter(ids=ids)))) if ids else []
        if unknown:  # a mistyped id must not look like "nothing to do"
            raise click.ClickException(
                f"No {'delivery' if len(unknown) == 1 else 'deliveries'} "
                f"{', '.join(map(str, unknown))} in this inbox."
            )
        with click.progressbar(
            length=len(selected), label="Replaying", show_pos=True, hidden=len(selected) < 20
        ) as bar:
            tally = replay(state, selected, on_each=lambda: bar.update(1))
        total = sum(tally.values())
        summary = ", ".join(f"{n} {s}" for s, n in sorted(tally.items())) or "nothing to do"
        click.echo(f"{plural(total, 'delivery')} replayed: {summary}.")

    @cli.command("prune")
    @click.option(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help=(
            "Processed and unhandled deliveries older than this "
            "(default: POSWEB_RETENTION, e.g. 30d)."
        ),
    )
    def prune_command(older_than: float | None) -> None:
        """Apply the retention rules now: finished deliveries past their retention, rejected
        ones past their bounds, remembered loyalty answers past theirs.

        The background dispatcher and workers do this by themselves as they go;
        this is for a one-off clean-up.
        """
        state = _state()
        retention = state.settings.retention
        if older_than is not None:
            retention = retention._replace(processed=older_than)
        deleted = state.require_inbox().housekeep(retention, batches=1_000_000)
        assert state.loyalty is not None
        deleted["loyalty answers"] = state.loyalty.housekeep(state.settings.loyalty_retention)
        click.echo(
            f"Deleted {plural(deleted['processed'], 'processed delivery')} and "
            f"{deleted['unhandled']} unhandled older than {human(retention.processed)}, "
            f"{deleted['dead']} dead, {deleted['rejected']} rejected, "
            f"{plural(deleted['loyalty answers'], 'remembered loyalty answer')}."
        )

    db = Group("db", help="The inbox's tables: versioned with Alembic (posweb_alembic_version).")
    cli.add_command(db)

    @db.command("upgrade")
    @click.option("--revision", default="head", show_default=True, help="Target revision.")
    def db_upgrade(revision: str) -> None:
        """Migrate the inbox's tables to this Flask-PosWeb's layout (data kept).

        Run it once after installing a release that changes the layout; until
        then the app answers 503 (DealPOS retries) and logs this command.
        """
        before, after = _state().require_inbox().layout.upgrade(revision)
        if before == after:
            click.echo(f"The inbox is at revision {after} already.")
        else:
            click.echo(f"Upgraded the inbox from revision {before or 'none'} to {after}.")

    @db.command("downgrade")
    @click.argument("revision")
    def db_downgrade(revision: str) -> None:
        """Migrate the inbox's tables back to REVISION (for a release rolled back)."""
        before, after = _state().require_inbox().layout.downgrade(revision)
        click.echo(f"Downgraded the inbox from revision {before} to {after or 'none'}.")

    @db.command("current")
    def db_current() -> None:
        """Show the inbox's revision and the one this code needs."""
        from .inbox.migrations import head

        found = _state().require_inbox().layout.current()
        needed = head()
        status = "up to date" if found == needed else "run 'flask posweb db upgrade'"
        click.echo(
            f"Inbox at revision {found or 'none (created on first use)'}; "
            f"this code needs {needed}: {status}."
        )


def _url_rows(base_url: str | None) -> list[dict[str, t.Any]]:
    """Every URL DealPOS may be given (:func:`~.web.routes.served_routes`), with
    what each one is."""
    rows: list[dict[str, t.Any]] = []
    state = get_state()
    urls = _url_adapter(base_url)
    for route in served_routes(state):
        endpoint = state.endpoint(route.endpoint)
        row: dict[str, t.Any] = {
            "kind": route.kind,
            "name": route.endpoint,
            "title": route.title,
            "path": urls.build(endpoint),
            "url": urls.build(endpoint, force_external=True),
        }
        if route.kind == "event":
            event = EVENTS[route.endpoint]
            row.update(
                wire_name=event.wire_name,
                wire_name_certainty=event.wire_name_certainty,
                group=event.group,
                signal=f"flask_posweb.signals.{event.name}",
                schema=f"{event.schema.__module__}.{event.schema.__qualname__}",
                provisional=event.provisional,
            )
        rows.append(row)
    return rows


def _url_adapter(base_url: str | None) -> MapAdapter:
    """Builds the app's URLs on ``base_url`` (else ``SERVER_NAME``): bound to the
    URL map directly, not through a request, which ``TRUSTED_HOSTS`` may refuse."""
    if base_url is None:
        adapter = current_app.create_url_adapter(None)
        assert adapter is not None  # the caller passes a base URL without SERVER_NAME
        return adapter
    parts = urllib.parse.urlsplit(base_url)
    return current_app.url_map.bind(
        parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme
    )
