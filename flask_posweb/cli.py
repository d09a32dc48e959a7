"""``flask posweb ...``: the commands of the blueprint's CLI group.

They exist on every app that registered the blueprint, and only there.

.. versionadded:: 0.1
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import signal as os_signal
import threading
import typing as t

import click
from flask import Blueprint
from flask import current_app
from flask import url_for

from . import sending
from .config import seconds
from .events import EVENTS
from .inbox import DISPATCHABLE
from .inbox import STATUSES
from .inbox import Delivery
from .inbox import Filter
from .inbox import utcnow
from .runner import Runner
from .runner import new_owner
from .state import get_state

__all__ = ["register_commands"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` (or combined: ``1d12h``) in seconds."""
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 12h or 7d.")
    return sum(float(number) * _UNITS[unit.lower()] for number, unit in parts)


def parse_moment(text: str) -> dt.datetime:
    """An ISO date/date-time (UTC unless it has a zone), or a duration ago (``2h``)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return utcnow() - dt.timedelta(seconds=parse_duration(text))
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def _filter_options(command: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """The options that choose deliveries, shared by ``list`` and ``replay``."""
    options = [
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice(STATUSES),
            help="Only this status (repeatable).",
        ),
        click.option(
            "--event",
            "events",
            multiple=True,
            type=click.Choice(list(EVENTS)),
            metavar="EVENT",
            help="Only this event (repeatable).",
        ),
        click.option(
            "--since",
            type=parse_moment,
            metavar="WHEN",
            help="Received at or after: ISO date-time (UTC) or a duration ago (2h).",
        ),
        click.option("--until", type=parse_moment, metavar="WHEN", help="Received before."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _summary(delivery: Delivery) -> dict[str, t.Any]:
    return {
        "id": delivery.id,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "received_at": delivery.received_at.isoformat(),
        "next_attempt_at": delivery.next_attempt_at and delivery.next_attempt_at.isoformat(),
        "replay": delivery.replay,
        "leased_by": delivery.locked_by,
    }


def register_commands(bp: Blueprint) -> None:
    """Attach every command to ``bp.cli`` (``flask posweb ...``)."""
    cli = bp.cli
    cli.help = "DealPOS webhooks: events, test deliveries, the inbox and its worker."

    @cli.command("events")
    @click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
    @click.option(
        "--base-url",
        default="http://localhost:5000",
        show_default=True,
        envvar="POSWEB_BASE_URL",
        help="Public URL of this app, for the full URLs.",
    )
    def events_command(as_json: bool, base_url: str) -> None:
        """List every event with the URL to paste into DealPOS and its signal."""
        rows: list[dict[str, t.Any]] = []
        with current_app.test_request_context(base_url=base_url):
            for event in EVENTS.values():
                rows.append(
                    {
                        "name": event.name,
                        "wire_name": event.wire_name,
                        "wire_name_certainty": event.wire_name_certainty,
                        "group": event.group,
                        "title": event.title,
                        "path": url_for(f"posweb.{event.name}"),
                        "url": url_for(f"posweb.{event.name}", _external=True),
                        "signal": f"flask_posweb.signals.{event.name}",
                        "schema": f"{event.schema.__module__}.{event.schema.__qualname__}",
                        "provisional": event.provisional,
                    }
                )
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            mark = "  (provisional)" if row["provisional"] else ""
            click.echo(f"{row['name']:<{width}}  {row['url']}  {row['signal']}{mark}")

    @cli.command("send")
    @click.argument("event")
    @click.argument("payload", type=click.File("rb"), required=False)
    @click.option(
        "--url",
        default="http://127.0.0.1:5000",
        show_default=True,
        help="The running app's base URL, or the endpoint's full URL.",
    )
    @click.option("--key", help="API key (default: the first of POSWEB_API_KEYS).")
    @click.option("--timeout", default=30.0, show_default=True, help="Seconds, as DealPOS.")
    def send_command(
        event: str, payload: t.BinaryIO | None, url: str, key: str | None, timeout: float
    ) -> None:
        """POST EVENT's PAYLOAD file (default: a built-in sample) as DealPOS would.

        Credentials come from this app's configuration: the API key, HTTP Basic
        or an OAuth token fetched from the token URL first, like DealPOS does.
        """
        body = payload.read() if payload is not None else sending.sample(event)
        result = sending.send(event, body, url, key=key, timeout=timeout)
        click.echo(f"{result.status} {result.reason}")
        click.echo(result.body.decode("utf-8", "replace"))
        if result.status >= 300:
            raise SystemExit(1)

    @cli.command("worker")
    @click.option("--once", is_flag=True, help="Drain what is due now, then exit.")
    @click.option("--batch", default=10, show_default=True, help="Deliveries leased at once.")
    def worker_command(once: bool, batch: int) -> None:
        """Dispatch due deliveries until stopped (SIGTERM/SIGINT finish the one in hand).

        Safe to run as several processes: each delivery is leased to one worker.
        """
        runner = Runner(get_state(), new_owner("worker"), batch=batch)
        if once:
            click.echo(f"{runner.drain()} deliveries dispatched.")
            return
        stop = threading.Event()
        for signum in (os_signal.SIGTERM, os_signal.SIGINT):
            os_signal.signal(signum, lambda *_: stop.set())
        click.echo(f"Worker {runner.owner} started.")
        runner.run_forever(stop, on_batch=lambda n: click.echo(f"{n} deliveries dispatched."))
        click.echo("Worker stopped.")

    @cli.command("list")
    @_filter_options
    @click.option("--limit", default=50, show_default=True, help="Newest first, at most this many.")
    @click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
    def list_command(
        statuses: tuple[str, ...],
        events: tuple[str, ...],
        since: dt.datetime | None,
        until: dt.datetime | None,
        limit: int,
        as_json: bool,
    ) -> None:
        """List stored deliveries, newest first."""
        inbox = get_state().require_inbox()
        found = inbox.select(Filter(statuses, events, since, until), limit=limit)
        if as_json:
            click.echo(json.dumps([_summary(d) for d in found], indent=2))
            return
        for d in found:
            when = f"  next {d.next_attempt_at:%Y-%m-%d %H:%M:%S}" if d.status == "failed" else ""
            click.echo(
                f"{d.id:>8}  {d.received_at:%Y-%m-%d %H:%M:%S}  {d.status:<9}  "
                f"{d.event:<30}  attempts {d.attempts}{when}"
            )
        totals = ", ".join(f"{n} {status}" for status, n in inbox.counts().items() if n)
        click.echo(f"-- inbox: {totals or 'empty'}")

    @cli.command("show")
    @click.argument("delivery_id", type=int)
    @click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
    def show_command(delivery_id: int, as_json: bool) -> None:
        """Show one delivery: headers (no credentials), body, errors, receiver attempts."""
        inbox = get_state().require_inbox()
        delivery = inbox.get(delivery_id)
        if delivery is None:
            raise click.ClickException(f"No delivery {delivery_id}.")
        details = {
            **_summary(delivery),
            "headers": delivery.headers,
            "body": delivery.raw.decode("utf-8", "replace"),
            "errors": delivery.errors,
            "receivers": [
                {**a._asdict(), "started_at": a.started_at.isoformat()}
                for a in inbox.attempts_of(delivery_id)
            ],
        }
        if as_json:
            click.echo(json.dumps(details, indent=2))
            return
        for field in (
            "id",
            "event",
            "status",
            "attempts",
            "received_at",
            "next_attempt_at",
            "replay",
            "leased_by",
        ):
            click.echo(f"{field + ':':<16} {details[field]}")
        click.echo("headers:")
        for name, value in delivery.headers.items():
            click.echo(f"  {name}: {value}")
        click.echo(f"body:\n  {details['body']}")
        if delivery.errors:
            click.echo(f"errors:\n  {json.dumps(delivery.errors, indent=2)}")
        for a in details["receivers"]:
            outcome = "ok" if a["ok"] else "FAILED"
            click.echo(
                f"attempt {a['attempt']} (gen {a['generation']}) {a['receiver']}: "
                f"{outcome} in {a['duration_ms']:.1f} ms at {a['started_at']}"
            )
            if a["error"]:
                click.echo("  " + a["error"].rstrip().replace("\n", "\n  "))

    @cli.command("replay")
    @click.argument("ids", nargs=-1, type=int)
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
        """Dispatch deliveries again, here and now: IDS, or those the options choose.

        Processed deliveries run every receiver again; failed and dead ones the
        receivers that have not succeeded; rejected ones are validated again.
        Receivers see ``event.is_replay``.
        """
        chosen = set(statuses) | ({"failed", "dead"} if failed else set())
        chosen |= {"rejected"} if rejected else set()
        which = Filter(tuple(chosen), events, since, until, ids)
        if not which.where():
            raise click.UsageError("Say what to replay: IDS, --failed, --rejected or a filter.")
        state = get_state()
        inbox, dispatcher = state.require_inbox(), state.require_dispatcher()
        selected = inbox.ids(which)
        owner, tally = new_owner("replay"), collections.Counter[str]()
        with click.progressbar(
            length=len(selected), label="Replaying", show_pos=True, hidden=len(selected) < 20
        ) as bar:
            for chunk in _chunks(selected, 500):
                inbox.mark_replay(Filter(ids=chunk))
                for delivery_id in chunk:
                    delivery = inbox.claim(delivery_id, owner, state.settings.lease, DISPATCHABLE)
                    with current_app.app_context():
                        tally[dispatcher.run(delivery, owner) if delivery else "busy"] += 1
                    bar.update(1)
        click.echo(
            f"{len(selected)} replayed: "
            + (", ".join(f"{n} {s}" for s, n in sorted(tally.items())) or "none")
        )

    @cli.command("prune")
    @click.option(
        "--older-than",
        type=parse_duration,
        metavar="DURATION",
        help="Default: POSWEB_RETENTION (e.g. 30d).",
    )
    def prune_command(older_than: float | None) -> None:
        """Delete processed deliveries older than the retention; trim rejected ones."""
        state = get_state()
        age = older_than if older_than is not None else seconds(state.settings.retention)
        removed = state.require_inbox().prune(age)
        click.echo(
            f"{removed} processed deliveries older than {dt.timedelta(seconds=age)} deleted."
        )


def _chunks(items: list[int], size: int) -> t.Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
