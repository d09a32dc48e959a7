"""``flask posweb events | send``: the URLs to give DealPOS, and a delivery sent
as DealPOS would.

.. versionadded:: 0.3
    (0.1 and 0.2 kept the whole command line in ``cli.py``.)
"""

from __future__ import annotations

import json
import typing as t
import urllib.parse

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.routing import MapAdapter

from .. import sending
from ..auth.credentials import is_merchant_name
from ..events import EVENTS
from ..state import get_state
from ..web.routes import served_routes
from .common import public_url

__all__ = ["events_command", "send_command"]


@click.command("events")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
@click.option(
    "--base-url",
    envvar="POSWEB_BASE_URL",
    callback=public_url,
    help="Public URL of this app (default: SERVER_NAME, else http://localhost:5000, a guess).",
)
@click.option(
    "--merchant",
    metavar="NAME",
    help="The merchant whose URLs to print, when the blueprint is mounted per merchant "
    "(/dealpos/<merchant>): what to paste into that merchant's DealPOS settings.",
)
def events_command(as_json: bool, base_url: str | None, merchant: str | None) -> None:
    """List every URL to paste into DealPOS: the events, with each one's signal,
    and the loyalty calls that have a provider and the OAuth token URL when
    clients are configured."""
    state = get_state()
    if state.per_merchant and merchant is None:
        raise click.UsageError("The URLs are per merchant: say whose, with --merchant NAME.")
    if merchant is not None and not state.per_merchant:
        raise click.UsageError("--merchant is for a blueprint mounted at /dealpos/<merchant>.")
    if merchant is not None and not is_merchant_name(merchant):
        raise click.BadParameter(
            f"{merchant!r} is not a merchant's name: letters, digits, - and _, at most 64.",
            param_hint="'--merchant'",
        )
    guessed = base_url is None and not current_app.config.get("SERVER_NAME")
    if guessed:
        click.echo(
            "Warning: no --base-url (or POSWEB_BASE_URL, SERVER_NAME): the URLs below "
            "assume http://localhost:5000.",
            err=True,
        )
    rows = _url_rows(base_url or ("http://localhost:5000" if guessed else None), merchant)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        mark = "  (provisional)" if row.get("provisional") else ""
        extra = f"  {row['signal']}" if row.get("signal") else ""
        click.echo(f"{row['name']:<{width}}  {row['url']}{extra}{mark}")


@click.command("send")
@with_appcontext
@click.argument("event")
@click.argument("file", type=click.File("rb"), required=False)
@click.option(
    "--url",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="The running app's base URL, or the endpoint's full URL.",
)
@click.option("--key", help="API key to send (default: the first of POSWEB_API_KEYS).")
@click.option(
    "--merchant",
    metavar="NAME",
    help="The merchant whose URL to post to (/dealpos/<merchant>); send its --key too.",
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds, as DealPOS.")
def send_command(
    event: str,
    file: t.BinaryIO | None,
    url: str,
    key: str | None,
    merchant: str | None,
    timeout: float,
) -> None:
    """POST the JSON in FILE (default: the event's built-in sample) to EVENT's URL,
    as DealPOS would.

    EVENT is an event name (flask posweb events) or a loyalty call
    (loyalty_member_points, loyalty_order_complete, loyalty_validate_coupon).
    Credentials come from this app's configuration: the API key, HTTP Basic,
    or an OAuth token fetched from the token URL first.
    """
    body = file.read() if file is not None else sending.sample(event)
    result = sending.send(event, body, url, key=key, merchant=merchant, timeout=timeout)
    click.echo(f"{result.status} {result.reason}")
    click.echo(result.body.decode("utf-8", "replace"))
    if result.status >= 300:
        raise SystemExit(1)


def _url_rows(base_url: str | None, merchant: str | None = None) -> list[dict[str, t.Any]]:
    """Every URL DealPOS may be given (:func:`~.web.routes.served_routes`), with
    what each one is."""
    rows: list[dict[str, t.Any]] = []
    state = get_state()
    urls = _url_adapter(base_url)
    values = {} if merchant is None else {"merchant": merchant}
    for route in served_routes(state):
        endpoint = state.endpoint(route.endpoint)
        row: dict[str, t.Any] = {
            "kind": route.kind,
            "name": route.endpoint,
            "title": route.title,
            "path": urls.build(endpoint, values),
            "url": urls.build(endpoint, values, force_external=True),
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
