"""``GET <prefix>/health`` and ``flask posweb check``: one rule, on both databases,
with the store refusing writes, gone, and back (issue 18)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import sqlite3
import threading
import time
import typing as t
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb.inbox import Backlog
from flask_posweb.inbox import Inbox
from flask_posweb.inbox.migrations import head
from flask_posweb.state import get_state

from .conftest import KEY
from .conftest import LEDGER
from .conftest import PG_URL
from .conftest import MakeApp
from .servers import free_port
from .test_inbox import admit
from .test_inbox import outcome

HEALTH = "/dealpos/health"


def healthy_app(make_app: MakeApp, **config: t.Any) -> Flask:
    return make_app(POSWEB_HEALTH=True, **config)


def inbox_of(app: Flask) -> Inbox:
    return get_state(app).require_inbox()


def test_off_by_default_a_json_404(app: Flask) -> None:
    assert app.config["POSWEB_HEALTH"] is False
    response = app.test_client().get(HEALTH)
    assert response.status_code == 404 and response.is_json
    assert response.get_json()["status"] == "error"


def test_a_string_does_not_turn_it_on(make_app: MakeApp) -> None:
    from flask_posweb import ConfigurationError

    with pytest.raises(ConfigurationError, match="POSWEB_HEALTH must be True or False"):
        make_app(POSWEB_HEALTH="false")


def test_a_healthy_store_answers_200_with_its_revision(
    make_app: MakeApp, database_url: str
) -> None:
    app = healthy_app(make_app, POSWEB_DATABASE_URL=database_url)
    response = app.test_client().get(HEALTH)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    answer = response.get_json()
    assert answer["healthy"] is True and answer["failed"] == {}
    store = answer["store"]
    assert store["dialect"] == database_url.partition(":")[0]
    assert (store["reachable"], store["writable"], store["current"]) == (True, True, True)
    assert store["revision"] == store["head"] == head()
    empty = {"waiting": 0, "due": 0, "oldest_due": None, "dead": 0, "stranded": 0, "lag": 0.0}
    assert store["backlog"] == empty


def test_the_backlog_figures_are_the_inboxs(make_app: MakeApp, database_url: str) -> None:
    app = healthy_app(make_app, POSWEB_DATABASE_URL=database_url)
    inbox = inbox_of(app)
    first = admit(inbox, b'{"n": 1}').delivery
    admit(inbox, b'{"n": 2}')
    dead = admit(inbox, b'{"n": 3}').delivery
    taken = inbox.claim(dead.id, "w", 60, [LEDGER.key])
    assert taken is not None and inbox.finish(taken, "w", [outcome("ledger", False)], "dead")
    backlog = app.test_client().get(HEALTH).get_json()["store"]["backlog"]
    # Generic over Backlog's fields: a field added later is served too.
    assert set(backlog) == {*Backlog._fields, "lag"}
    assert (backlog["waiting"], backlog["due"], backlog["dead"]) == (2, 2, 1)
    assert first.next_attempt_at is not None
    assert backlog["oldest_due"] == first.next_attempt_at.isoformat() + "+00:00"
    assert backlog["lag"] >= 0


def test_without_an_inbox_200_and_no_store(make_app: MakeApp) -> None:
    app = healthy_app(make_app, POSWEB_INBOX=False)
    response = app.test_client().get(HEALTH)
    assert response.status_code == 200
    assert response.get_json() == {"healthy": True, "failed": {}}


def test_other_methods_get_a_json_405(make_app: MakeApp) -> None:
    response = healthy_app(make_app).test_client().post(HEALTH, data=b"{}")
    assert response.status_code == 405 and response.is_json
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD"}


def test_one_url_for_a_blueprint_mounted_per_merchant(
    posweb: PosWeb, tmp_path: pathlib.Path
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(
        TESTING=True,
        POSWEB_HEALTH=True,
        POSWEB_CREDENTIALS=lambda query: None,
        POSWEB_DATABASE_URL=f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
    )
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos/<merchant>")
    try:
        client = app.test_client()
        assert client.get("/dealpos/health").status_code == 200  # no merchant in it
        assert get_state(app).path("health") == "/dealpos/health"
        missing = client.get("/dealpos/acme/health")
        assert missing.status_code == 404 and missing.is_json
    finally:
        get_state(app).close()


def test_the_hosts_rate_limits_leave_probes_alone(make_app: MakeApp) -> None:
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app = healthy_app(make_app)
    # Set up after the blueprint: its check runs after the hook that exempts the probe.
    Limiter(get_remote_address, app=app, default_limits=["1 per minute"], storage_uri="memory://")
    app.add_url_rule("/limited", "limited", lambda: "ok")
    client = app.test_client()
    assert [client.get("/limited").status_code for _ in range(2)] == [200, 429]
    assert [client.get(HEALTH).status_code for _ in range(3)] == [200, 200, 200]


def test_a_probe_starts_the_background_dispatcher(posweb: PosWeb, tmp_path: pathlib.Path) -> None:
    """A load balancer's check is the first request a new process serves."""
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(  # TESTING off: as it runs in production
        POSWEB_API_KEYS=[KEY],
        POSWEB_HEALTH=True,
        POSWEB_DATABASE_URL=f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
    )
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    background = get_state(app).require_dispatch().background
    try:
        assert background is not None and not background.running
        assert app.test_client().get(HEALTH).status_code == 200
        assert background.running
    finally:
        get_state(app).close()


# -- the store refusing writes ---------------------------------------------------------


@contextlib.contextmanager
def refusing_writes(url: str) -> Iterator[None]:
    """The store refuses writes, the server left running: the SQLite folder
    remounted read-only, or this test's own PostgreSQL database switched to
    read-only transactions (its sessions ended, so that new ones take it)."""
    if url.startswith("sqlite"):
        folder = str(pathlib.Path(url.removeprefix("sqlite:///")).parent)
        assert os.system(f"mount --bind {folder} {folder}") == 0
        assert os.system(f"mount -o remount,ro,bind {folder}") == 0
        try:
            yield
        finally:  # lazily: the app's open files keep the mount busy until they let go
            assert os.system(f"umount -l {folder}") == 0
        return
    database = sa.engine.make_url(url).database
    assert database == sa.engine.make_url(PG_URL or "").database  # ours, nobody else's
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1),
        poolclass=sa.pool.NullPool,
        isolation_level="AUTOCOMMIT",
    )

    def switch(read_only: bool) -> None:
        with engine.connect() as connection:
            # A session opened while it is on is read-only itself: off first.
            connection.execute(sa.text("SET default_transaction_read_only = off"))
            value = "on" if read_only else "off"
            connection.execute(
                sa.text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = {value}')
            )
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :database AND pid <> pg_backend_pid()"
                ),
                {"database": database},
            )

    switch(True)
    try:
        yield
    finally:
        switch(False)
        engine.dispose()


@pytest.mark.root
def test_a_store_refusing_writes_answers_503_then_200(make_app: MakeApp, database_url: str) -> None:
    config = {"POSWEB_DATABASE_URL": database_url, "POSWEB_DATABASE_TIMEOUT": 2}
    before = healthy_app(make_app, **config)
    assert before.test_client().get(HEALTH).status_code == 200
    get_state(before).close()
    with refusing_writes(database_url):
        # Started inside, as after a deploy onto a read-only volume: a process
        # that opened the SQLite file before keeps writing through its open files.
        app = healthy_app(make_app, **config)
        client = app.test_client()
        started = time.monotonic()
        response = client.get(HEALTH)
        assert time.monotonic() - started < 2 + 1
        answer = response.get_json()
        assert response.status_code == 503, answer
        assert response.headers["Retry-After"] == "10"
        assert answer["healthy"] is False
        if database_url.startswith("sqlite"):
            # In WAL mode even a reader writes (its shared memory file, beside
            # the database): a read-only folder fails the very first read.
            failed = "reachable"
        else:
            failed = "writable"
            assert answer["store"]["reachable"] is True and answer["store"]["writable"] is False
        assert list(answer["failed"]) == [failed]
        assert "detail" not in answer["failed"][failed]  # the driver's words: log only
    response = client.get(HEALTH)
    assert response.status_code == 200, response.get_json()


# -- the store gone ----------------------------------------------------------------------


class Forwarder:
    """A TCP forwarder to the test's PostgreSQL: stopping it is the server
    going away for this app, and for nobody else."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        self.target, self.port = target, port
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self.port))
            listener.listen()
        except OSError:
            listener.close()
            raise
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Refuse new connections and break every open one, as a stopped server does."""
        assert self._listener is not None
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()


@contextlib.contextmanager
def a_store_that_goes(database_url: str, tmp_path: pathlib.Path) -> Iterator[tuple[str, t.Any]]:
    """An inbox URL that cannot be reached, and a function that brings it
    back (``True``) or takes it away again (``False``)."""
    if database_url.startswith("sqlite"):
        blocker = tmp_path / "gone"
        blocker.write_text("a file where the inbox's folder should be")

        def sqlite_back(back: bool) -> None:
            assert back, "an SQLite file is not taken away from open connections"
            blocker.unlink()
            blocker.mkdir()

        yield f"sqlite:///{blocker / 'inbox.sqlite3'}", sqlite_back
        return
    url = sa.engine.make_url(database_url)
    forwarder = Forwarder((url.host or "127.0.0.1", url.port or 5432), free_port())

    def postgresql_back(back: bool) -> None:
        (forwarder.start if back else forwarder.stop)()

    proxied = url.set(host="127.0.0.1", port=forwarder.port)
    try:
        yield proxied.render_as_string(hide_password=False), postgresql_back
    finally:
        with contextlib.suppress(AssertionError, OSError):
            forwarder.stop()


def test_an_unreachable_store_answers_503_then_200(
    make_app: MakeApp, database_url: str, tmp_path: pathlib.Path
) -> None:
    with a_store_that_goes(database_url, tmp_path) as (url, back):
        app = healthy_app(make_app, POSWEB_DATABASE_URL=url, POSWEB_DATABASE_TIMEOUT=2)
        client = app.test_client()
        started = time.monotonic()
        response = client.get(HEALTH)
        assert time.monotonic() - started < 2 + 1
        answer = response.get_json()
        assert response.status_code == 503 and response.headers["Retry-After"] == "10"
        assert list(answer["failed"]) == ["reachable"]  # nothing else tried
        assert answer["store"]["reachable"] is False and answer["store"]["writable"] is None
        # The driver's words name the host, the port or the path: not in this answer.
        assert "127.0.0.1" not in response.text and str(tmp_path) not in response.text
        back(True)
        response = client.get(HEALTH)
        assert response.status_code == 200, response.get_json()
        if database_url.startswith("postgresql"):  # the server stops under an open connection
            back(False)
            assert client.get(HEALTH).status_code == 503
            back(True)
            assert client.get(HEALTH).status_code == 200


def test_a_foreign_lock_ends_by_the_database_timeout(
    make_app: MakeApp, tmp_path: pathlib.Path
) -> None:
    """An ``sqlite3`` shell (or a backup) holding the write lock: the probe
    answers 503 by ``POSWEB_DATABASE_TIMEOUT``, not once the lock is free."""
    path = tmp_path / "locked.sqlite3"
    app = healthy_app(
        make_app, POSWEB_DATABASE_URL=f"sqlite:///{path}", POSWEB_DATABASE_TIMEOUT=0.5
    )
    client = app.test_client()
    assert client.get(HEALTH).status_code == 200
    foreign = sqlite3.connect(path, isolation_level=None)
    foreign.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        response = client.get(HEALTH)
        assert time.monotonic() - started < 0.5 + 0.5
        assert response.status_code == 503
        assert list(response.get_json()["failed"]) == ["writable"]
        assert response.get_json()["store"]["backlog"] is not None  # reads never wait
    finally:
        foreign.execute("ROLLBACK")
        foreign.close()
    assert client.get(HEALTH).status_code == 200


# -- flask posweb check ------------------------------------------------------------------


def check(app: Flask, *args: str) -> t.Any:
    return app.test_cli_runner().invoke(args=["posweb", "check", *args])


def test_check_exits_0_when_healthy_health_url_on_or_not(make_app: MakeApp) -> None:
    app = make_app()  # POSWEB_HEALTH off: the command runs all the same
    result = check(app)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Store (sqlite): writable, revision {head()} (current)."
    assert lines[1] == "Backlog: 0 waiting, 0 due; 0 dead."
    assert lines[-1] == "Healthy."
    result = check(app, "--json")
    assert result.exit_code == 0
    answer = json.loads(result.stdout)
    assert answer["healthy"] is True and answer["store"]["revision"] == head()


def test_check_without_an_inbox(make_app: MakeApp) -> None:
    result = check(make_app(POSWEB_INBOX=False))
    assert result.exit_code == 0 and "nothing to check" in result.stdout


def test_check_an_unreachable_store_is_one_line_and_exit_1(
    make_app: MakeApp, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "gone").write_text("not a folder")
    app = make_app(POSWEB_DATABASE_URL=f"sqlite:///{tmp_path / 'gone' / 'inbox.sqlite3'}")
    result = check(app)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: The inbox's database is unreachable: OperationalError: unable to open database file"
    ]
    result = check(app, "--json")
    assert result.exit_code == 1
    failed = json.loads(result.stdout)["failed"]
    assert failed["reachable"]["detail"] == "OperationalError: unable to open database file"


def test_check_an_outdated_store_exits_1_and_says_what_to_run(make_app: MakeApp) -> None:
    app = healthy_app(make_app)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["posweb", "db", "upgrade"]).exit_code == 0
    previous = f"{int(head()) - 1:04d}"
    assert runner.invoke(args=["posweb", "db", "downgrade", previous]).exit_code == 0
    result = check(app)
    assert result.exit_code == 1
    assert f"revision {previous} (this code needs {head()})" in result.stdout
    assert "run 'flask posweb db upgrade'" in result.stdout
    assert result.stdout.splitlines()[-1] == "Unhealthy: 1 check failed."
    answer = app.test_client().get(HEALTH).get_json()  # the URL says the same
    assert answer["store"]["revision"] == previous and answer["store"]["current"] is False
    assert list(answer["failed"]) == ["current"]
