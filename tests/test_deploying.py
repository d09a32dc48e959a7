"""Under a real gunicorn on loopback: bodies cut short by a client that goes
away, settings as the environment gives them.

Bounded in time: every wait has a deadline. Run on SQLite, and on PostgreSQL
when ``POSWEB_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import json
import pathlib
import socket
from collections.abc import Iterator

import pytest

from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox

from .servers import KEY
from .servers import Env
from .servers import free_port
from .servers import gunicorn
from .servers import output_of
from .servers import payment
from .servers import post
from .servers import stop
from .servers import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: pathlib.Path, database_url: str) -> Env:
    return Env.of(tmp_path, database_url)


@pytest.fixture
def inbox(env: Env) -> Iterator[Inbox]:
    store = Inbox.from_url(env["FAULT_DATABASE_URL"])
    yield store
    store.close()


@pytest.fixture
def sqlite_env(tmp_path: pathlib.Path) -> Env:
    """One database for the tests that are not about the store."""
    return Env.of(tmp_path, f"sqlite:///{tmp_path / 'inbox.sqlite3'}")


@pytest.fixture
def sqlite_inbox(sqlite_env: Env) -> Iterator[Inbox]:
    store = Inbox.from_url(sqlite_env["FAULT_DATABASE_URL"])
    yield store
    store.close()


def head(content_length: int | None = None, path: str = "/dealpos/payment-created") -> bytes:
    """A webhook's request line and headers, as DealPOS sends them (chunked
    when there is no ``content_length``)."""
    framing = (
        "Transfer-Encoding: chunked"
        if content_length is None
        else f"Content-Length: {content_length}"
    )
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {KEY}\r\n{framing}\r\n\r\n"
    ).encode()


def answer_of(connection: socket.socket) -> tuple[int, dict[str, object]]:
    """The status and JSON body the server sent before it closed."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def stored(inbox: Inbox) -> list[bytes]:
    return [delivery.raw for delivery in inbox.deliveries(Filter(), limit=None)]


# -- a body cut short --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrived", "declared", "message"),
    [
        # What arrived parses: 0.2 stored it and answered 200.
        ("whole", "longer", "ended after {sent} of the {declared} bytes"),
        # It does not: 0.2 kept it as rejected junk.
        ("prefix", "whole", "ended after {sent} of the {declared} bytes"),
        ("prefix", "chunked", "ended before it was whole"),
    ],
    ids=["a-valid-body-declared-longer", "a-prefix", "a-chunked-prefix"],
)
def test_a_body_cut_short_is_a_400_and_never_stored(
    env: Env, inbox: Inbox, arrived: str, declared: str, message: str
) -> None:
    """Hostile bytes round two, finding 1, under gunicorn's sync workers: the
    client sends less than it declared, then stops sending (it still listens
    for the answer), or goes away altogether."""
    whole = payment(1)
    sent = whole if arrived == "whole" else whole[:100]
    length = {"longer": len(whole) + 400, "whole": len(whole), "chunked": None}[declared]
    request = head(length) + (sent if length is not None else b"%x\r\n" % len(whole) + sent)
    port = free_port()
    server = gunicorn(env, port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as listening:
            listening.sendall(request)
            listening.shutdown(socket.SHUT_WR)
            status, body = answer_of(listening)
        assert status == 400
        assert message.format(sent=len(sent), declared=length) in str(body["message"])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as gone:
            gone.sendall(request)  # and closed without waiting for an answer
        wait_for(
            lambda: output_of(server).count("refused with 400: The body ended") == 2,
            30,
            "the second refusal",
        )
        assert post(port, payment(2)) == 200
    finally:
        stop(server)
    assert stored(inbox) == [payment(2)]  # neither cut-short body, not even as rejected


# -- settings from the environment -------------------------------------------------------


def test_a_lease_given_as_a_string_of_seconds_boots_the_workers(
    sqlite_env: Env, sqlite_inbox: Inbox
) -> None:
    """Hostile bytes round two, finding 7: ``POSWEB_LEASE = "20"``, as an
    environment variable gives it, was refused and no worker booted."""
    sqlite_env["FAULT_LEASE"] = "20"  # tests/fault_app.py passes it on as the string it is
    port = free_port()
    server = gunicorn(sqlite_env, port)  # waits for both workers and an answer
    try:
        assert post(port, payment(1)) == 200
    finally:
        _, output = stop(server)
    assert "Worker failed to boot" not in output and "POSWEB_LEASE" not in output
    assert stored(sqlite_inbox) == [payment(1)]
