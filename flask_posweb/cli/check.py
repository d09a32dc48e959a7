"""``flask posweb check``: the health URL's checks from a shell, for cron, systemd
and Kubernetes ``exec`` probes.

The same rule as ``GET <prefix>/health`` (:func:`~flask_posweb.inbox.health.check_health`),
whether ``POSWEB_HEALTH`` is on or not; here the driver's own words are shown
too, since whoever runs it has the app's configuration anyway.

.. versionadded:: 0.3
"""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from ..durations import plural
from ..inbox.health import Health
from ..inbox.health import StoreHealth
from ..inbox.health import check_health
from ..state import get_state
from .common import when

__all__ = ["check_command"]


@click.command("check")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_command(as_json: bool) -> None:
    """Check that the inbox's store is reachable, current and writable, and
    show its backlog. Exit code 0 when healthy, 1 when not.

    The same checks as GET <prefix>/health (POSWEB_HEALTH), which need not be on.
    """
    report = check_health(get_state().inbox)
    if as_json:
        click.echo(json.dumps(report.as_json(details=True), indent=2, sort_keys=True))
    elif report.store is not None and not report.store.reachable:
        failure = report.failures["reachable"]
        raise click.ClickException(
            f"The inbox's database is unreachable: {failure.detail or failure.reason}"
        )
    else:
        for line in _lines(report):
            click.echo(line)
    if not report.healthy:
        click.get_current_context().exit(1)


def _lines(report: Health) -> list[str]:
    if report.store is None:
        return ["No inbox (POSWEB_INBOX is off): nothing to check. Healthy."]
    lines = [_store_line(report.store)]
    for name, failure in report.failures.items():
        detail = f" ({failure.detail})" if failure.detail else ""
        lines.append(f"  {name}: {failure.reason}{detail}")
    failed = plural(len(report.failures), "check")
    lines.append("Healthy." if report.healthy else f"Unhealthy: {failed} failed.")
    return lines


def _store_line(store: StoreHealth) -> str:
    writable = {True: "writable", False: "NOT writable", None: "writability not checked"}
    revision = store.revision or "none"
    current = "current" if store.current else f"this code needs {store.head}"
    line = f"Store ({store.dialect}): {writable[store.writable]}, revision {revision} ({current})."
    backlog = store.backlog
    if backlog is None:
        return line
    oldest = ""
    if backlog.oldest_due is not None:
        lag = round(backlog.lag(store.checked_at))
        oldest = f", the oldest due since {when(backlog.oldest_due)} ({plural(lag, 'second')} ago)"
    return (
        f"{line}\nBacklog: {backlog.waiting} waiting, {backlog.due} due{oldest}; "
        f"{backlog.dead} dead."
    )
