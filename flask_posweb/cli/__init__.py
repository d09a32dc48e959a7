"""``flask posweb ...``: the commands of the blueprint's CLI group.

They exist on every app that registered the blueprint, and only there. Every
error is one line through click: exit code 2 for a usage mistake, 1 for a
failure. Times are shown in UTC, and say so.

.. versionadded:: 0.1
"""

from __future__ import annotations

from flask import Blueprint

from .check import check_command
from .common import PosWebGroup
from .common import parse_moment
from .db import db
from .deliveries import list_command
from .deliveries import merchants_command
from .deliveries import prune_command
from .deliveries import replay_command
from .deliveries import show_command
from .urls import events_command
from .urls import send_command
from .worker import worker_command

__all__ = ["COMMANDS", "PosWebGroup", "parse_moment", "register_commands"]

#: Every command, in the order ``flask posweb --help`` lists them.
COMMANDS = (
    events_command,
    send_command,
    worker_command,
    list_command,
    merchants_command,
    show_command,
    replay_command,
    prune_command,
    check_command,
    db,
)


def register_commands(bp: Blueprint) -> None:
    """Give ``bp`` its command group (``flask posweb ...``) with every command."""
    bp.cli = PosWebGroup(
        help=(
            "DealPOS webhooks: URLs to paste, test deliveries, the inbox and its worker, "
            "its health, the OpenAPI description."
        )
    )
    for command in COMMANDS:
        bp.cli.add_command(command)
