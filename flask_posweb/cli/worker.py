"""``flask posweb worker``: dispatch due deliveries (or relay them to Celery) until stopped.

.. versionadded:: 0.3
    (0.1 and 0.2 kept the whole command line in ``cli.py``.)
"""

from __future__ import annotations

import signal as os_signal
import threading

import click
from flask.cli import with_appcontext

from ..dispatch.owners import new_owner
from ..dispatch.runner import report_lacking
from ..durations import plural
from .common import inbox_state

__all__ = ["worker_command"]


@click.command("worker")
@with_appcontext
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
    state = inbox_state()
    if relay and state.settings.dispatch != "celery":
        raise click.UsageError("--relay is for POSWEB_DISPATCH = 'celery'.")
    dispatch = state.require_dispatch()
    runner = dispatch.runner(new_owner("relay" if relay else "worker"), relay=relay)
    verb = "sent to Celery" if relay else "dispatched"
    for line in report_lacking(dispatch.dispatcher):
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
