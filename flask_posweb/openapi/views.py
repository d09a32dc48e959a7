"""The OpenAPI description served and written: ``GET <prefix>/openapi.json``, when
``POSWEB_OPENAPI`` is on, and ``flask posweb openapi``.

.. versionadded:: 0.2
"""

from __future__ import annotations

import re
import typing as t

import click
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import request
from flask.cli import with_appcontext

from ..exceptions import NotFoundError
from ..state import get_state

__all__ = ["OPENAPI_URL", "openapi_command", "openapi_json", "register_openapi"]

#: Where the OpenAPI description is served, when ``POSWEB_OPENAPI`` is on.
OPENAPI_URL = "/openapi.json"


def openapi_json() -> Response:
    """``GET <prefix>/openapi.json``: this app's OpenAPI description, when
    ``POSWEB_OPENAPI`` is on; otherwise a 404, as for any unknown path.

    No credentials: the document describes the endpoints and receives nothing,
    and the tools that fetch it (documentation viewers, client generators) send
    none. It names no secret: only the header and the modes credentials take.
    An app that wants it private leaves this off and serves
    :func:`~flask_posweb.openapi.openapi_json` from a view of its own.
    """
    state = get_state()
    if not state.settings.openapi:
        raise NotFoundError(request.path)
    # apispec (the openapi extra), imported when the document is first asked for.
    from .document import served_json

    return Response(served_json(state.app, request.script_root), mimetype="application/json")


def _public_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise click.BadParameter(f"{value!r} is not a URL like https://shop.example.com.")
    return value


@click.command("openapi")
@with_appcontext
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
    callback=_public_url,
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
        from .document import openapi_json  # apispec: imported by this command only
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


def register_openapi(bp: Blueprint) -> None:
    """Add the document's URL to ``bp``, and its command to ``bp.cli``."""
    bp.cli.add_command(openapi_command)
    bp.add_url_rule(
        OPENAPI_URL,
        "openapi_json",
        openapi_json,
        methods=["GET"],
        provide_automatic_options=False,
    )
