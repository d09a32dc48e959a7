"""The deployment ``docs/deploying.rst`` recommends, under a real gunicorn on
loopback: slow clients that trickle bytes, bodies cut short by a client that
goes away, settings as the environment gives them.

Bounded in time: every wait has a deadline. Run on SQLite, and on PostgreSQL
when ``POSWEB_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import json
import pathlib
import select
import socket
import threading
import time
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

ROOT = pathlib.Path(__file__).parent.parent
#: The gunicorn options the deploying page recommends without a proxy.
RECOMMENDED = ("-w", "2", "-k", "gthread", "--threads", "8", "--timeout", "30", "--keep-alive", "5")
#: The longest a delivery may wait for its answer while slow clients hold
#: their threads: far above the milliseconds it takes, far below the 30 s a
#: sync worker froze for.
PROMPT = 3.0


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


# -- slow clients ------------------------------------------------------------------------


class Trickle:
    """Connections that send one byte a second each, for as long as the test
    runs: some their headers (the app never sees them), some the body of an
    authenticated request (the app is reading it)."""

    def __init__(self, port: int, headers: int, bodies: int) -> None:
        self.connections: list[tuple[socket.socket, bytes]] = []
        for _ in range(headers):
            connection = socket.create_connection(("127.0.0.1", port), timeout=30)
            connection.sendall(b"POST /dealpos/payment-created HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            self.connections.append((connection, b"X-Slow: " + b"a" * 200))
        for _ in range(bodies):
            connection = socket.create_connection(("127.0.0.1", port), timeout=30)
            connection.sendall(head(500))
            self.connections.append((connection, b" " * 500))
        self.sent = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for connection, data in self.connections:
                connection.send(data[self.sent : self.sent + 1])
            self.sent += 1

    def unanswered(self) -> bool:
        """Whether the server still reads every one of them: none answered or closed."""
        sockets = [connection for connection, _ in self.connections]
        return select.select(sockets, [], [], 0)[0] == []

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)
        for connection, _ in self.connections:
            connection.close()


def test_the_recommended_server_answers_while_slow_clients_trickle(
    sqlite_env: Env, sqlite_inbox: Inbox
) -> None:
    """Hostile bytes round two, finding 3: three connections sending one byte
    a second froze ``gunicorn -w 2`` (sync workers) for 30 s. With the
    recommended threaded workers, each holds one thread and the others answer."""
    port = free_port()
    server = gunicorn(sqlite_env, port, *RECOMMENDED)
    slow = Trickle(port, headers=3, bodies=2)
    answered: list[tuple[int | None, float]] = []
    try:
        wait_for(lambda: slow.sent >= 2, 10, "the slow clients to hold their threads")
        until = time.monotonic() + 8
        while time.monotonic() < until:
            started = time.monotonic()
            status = post(port, payment(len(answered)))
            answered.append((status, time.monotonic() - started))
            time.sleep(0.2)
        assert slow.sent >= 8 and slow.unanswered()  # they were trickling all along
    finally:
        slow.close()
        stop(server)
    assert len(answered) >= 10
    assert [status for status, _ in answered] == [200] * len(answered)
    assert max(took for _, took in answered) < PROMPT, answered
    assert sorted(stored(sqlite_inbox)) == sorted(payment(n) for n in range(len(answered)))


def test_the_docs_recommend_what_is_tested() -> None:
    page = (ROOT / "docs" / "deploying.rst").read_text()
    assert "gunicorn " + " ".join(RECOMMENDED) + " 'app:create_app()'" in page


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
