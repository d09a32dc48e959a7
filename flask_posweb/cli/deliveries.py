"""``flask posweb list | show | replay | prune``: the deliveries the inbox keeps.

.. versionadded:: 0.3
    (0.1 and 0.2 kept the whole command line in ``cli.py``.)
"""

from __future__ import annotations

import datetime as dt
import json

import click
from flask.cli import with_appcontext

from ..dispatch import replay
from ..durations import human
from ..durations import plural
from ..inbox import Filter
from .common import DELIVERY_ID
from .common import LIMIT
from .common import duration
from .common import filter_options
from .common import inbox_state
from .common import summary
from .common import when
from .common import when_iso

__all__ = ["list_command", "merchants_command", "prune_command", "replay_command", "show_command"]


@click.command("list")
@with_appcontext
@filter_options
@click.option(
    "--limit", type=LIMIT, default=50, show_default=True, help="Newest first, at most this many."
)
@click.option("--before", type=DELIVERY_ID, metavar="ID", help="Only ids below ID (the next page).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
def list_command(
    statuses: tuple[str, ...],
    events: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    merchants: tuple[str | None, ...],
    limit: int,
    before: int | None,
    as_json: bool,
) -> None:
    """List stored deliveries, newest first, with the inbox's totals."""
    inbox = inbox_state().require_inbox()
    which = Filter(statuses, events, since, until, merchant=merchants)
    found = inbox.deliveries(which, limit=limit, before=before)
    if as_json:
        click.echo(json.dumps([summary(d) for d in found], indent=2))
        return
    width = max((len(d.merchant or "") for d in found), default=0)
    for d in found:
        later = f"  next {when(d.next_attempt_at)}" if d.status == "failed" else ""
        whose = f"{d.merchant or '-':<{width}}  " if width else ""
        click.echo(
            f"{d.id:>8}  {when(d.received_at)}  {whose}{d.status:<9}  {d.event:<30}  "
            f"{plural(d.attempts, 'attempt')}{later}"
        )
    totals = ", ".join(f"{n} {status}" for status, n in inbox.counts().items() if n)
    click.echo(f"-- inbox: {totals or 'empty'}")


@click.command("show")
@with_appcontext
@click.argument("delivery_id", type=DELIVERY_ID, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def show_command(delivery_id: int, as_json: bool) -> None:
    """Show one delivery: headers (no credentials), body, errors, every receiver attempt."""
    inbox = inbox_state().require_inbox()
    delivery = inbox.get(delivery_id)
    if delivery is None:
        raise click.ClickException(f"No delivery {delivery_id} in this inbox.")
    attempts = inbox.attempts(delivery_id)
    if as_json:
        details = {
            **summary(delivery),
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
    if delivery.merchant is not None:
        click.echo(f"{'merchant:':<16} {delivery.merchant}")
    click.echo(f"{'event:':<16} {delivery.event}")
    click.echo(f"{'status:':<16} {delivery.status}")
    click.echo(f"{'attempts:':<16} {delivery.attempts}")
    click.echo(f"{'received:':<16} {when(delivery.received_at)}")
    if delivery.status == "failed":
        click.echo(f"{'next attempt:':<16} {when(delivery.next_attempt_at)}")
    if delivery.replay:
        click.echo(f"{'replay:':<16} yes")
    if delivery.locked_by:
        click.echo(f"{'leased by:':<16} {delivery.locked_by} until {when(delivery.locked_until)}")
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


@click.command("replay")
@with_appcontext
@click.argument("ids", nargs=-1, type=DELIVERY_ID, metavar="[ID]...")
@click.option("--failed", is_flag=True, help="Every failed and dead delivery.")
@click.option("--rejected", is_flag=True, help="Every rejected delivery (validated again).")
@click.option(
    "--adopt",
    is_flag=True,
    help="Run them with this app's receivers from now on (deliveries stranded by a "
    "deploy that renamed or removed a receiver).",
)
@filter_options
def replay_command(
    ids: tuple[int, ...],
    failed: bool,
    rejected: bool,
    adopt: bool,
    statuses: tuple[str, ...],
    events: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    merchants: tuple[str | None, ...],
) -> None:
    """Dispatch deliveries again, here and now: the IDs given, or those the options choose.

    Processed and unhandled deliveries run every receiver again; failed and
    dead ones the receivers that have not succeeded; rejected ones are
    validated again first. Receivers see event.is_replay.

    A delivery expects the receivers of the app that stored it; with --adopt
    it expects this app's from then on (stranded deliveries need it): each of
    them runs once, except those that already succeeded under the same name.
    """
    chosen = set(statuses) | ({"failed", "dead"} if failed else set())
    chosen |= {"rejected"} if rejected else set()
    which = Filter(tuple(chosen), events, since, until, ids, merchant=merchants)
    if not which.narrowed:
        raise click.UsageError("Say what to replay: IDs, --failed, --rejected or a filter.")
    state = inbox_state()
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
        tally = replay(state, selected, adopt=adopt, on_each=lambda: bar.update(1))
    total = sum(tally.values())
    summary = ", ".join(f"{n} {s}" for s, n in sorted(tally.items())) or "nothing to do"
    click.echo(f"{plural(total, 'delivery')} replayed: {summary}.")
    if tally["lacking receivers"]:
        click.echo(
            "Those lacking receivers expect some this app does not have (renamed or "
            "removed?): replay them with --adopt to run this app's receivers instead."
        )


@click.command("prune")
@with_appcontext
@click.option(
    "--older-than",
    type=duration,
    metavar="DURATION",
    help=(
        "Processed and unhandled deliveries older than this (default: POSWEB_RETENTION, e.g. 30d)."
    ),
)
def prune_command(older_than: float | None) -> None:
    """Apply the retention rules now: finished deliveries past their retention, rejected
    ones past their bounds, remembered loyalty answers past theirs.

    The background dispatcher and workers do this by themselves as they go;
    this is for a one-off clean-up.
    """
    state = inbox_state()
    retention = state.settings.retention
    if older_than is not None:
        retention = retention._replace(processed=older_than)
    deleted = state.require_inbox().housekeep(retention, batches=1_000_000)
    click.echo(
        f"Deleted {plural(deleted['processed'], 'processed delivery')} and "
        f"{deleted['unhandled']} unhandled older than {human(retention.processed)}, "
        f"{deleted['dead']} dead, {deleted['rejected']} rejected, "
        f"{plural(deleted['loyalty answers'], 'remembered loyalty answer')}."
    )


@click.command("merchants")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
def merchants_command(as_json: bool) -> None:
    """List the merchants the inbox has deliveries of: their counts per status, and
    when their oldest waiting (pending or failed) delivery arrived; the merchant
    waiting longest first. '-' is the app's own credentials."""
    found = inbox_state().require_inbox().merchants()
    if as_json:
        rows = [
            {
                "merchant": m.merchant,
                "counts": m.counts,
                "oldest_waiting": None if m.oldest_waiting is None else when_iso(m.oldest_waiting),
            }
            for m in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo("No deliveries in this inbox.")
        return
    statuses = list(found[0].counts)
    width = max(len("merchant"), *(len(m.merchant or "-") for m in found))
    head = "  ".join(f"{s:>9}" for s in statuses)
    click.echo(f"{'merchant':<{width}}  {head}  oldest waiting")
    for m in found:
        counts = "  ".join(f"{m.counts[s]:>9}" for s in statuses)
        click.echo(f"{m.merchant or '-':<{width}}  {counts}  {when(m.oldest_waiting)}")
