"""Real servers for the fault tests: gunicorn, ``flask posweb worker``, Redis, and how
to talk to them on loopback. Every wait has a deadline."""

from __future__ import annotations

import collections
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import typing as t

from flask_posweb.inbox import Delivery
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.sending import sample

ROOT = pathlib.Path(__file__).parent.parent
APP = "tests.fault_app:create_app"
KEY = "fault-key-0123456789"
#: The receivers of payment_created in tests/fault_app.py.
PAYMENT = ("ledger", "mailer")
HEADERS = {"Content-Type": "application/json", "X-API-Key": KEY}


class Env(dict[str, str]):
    """The environment every process of one test shares."""

    @classmethod
    def of(cls, tmp_path: pathlib.Path, database_url: str, **extra: str) -> Env:
        """The test's files in ``tmp_path``, its inbox at ``database_url``."""
        return cls(
            os.environ,
            PYTHONPATH=str(ROOT),
            FAULT_INSTANCE=str(tmp_path / "instance"),
            FAULT_DATABASE_URL=database_url,
            FAULT_EFFECTS=str(tmp_path / "effects.sqlite3"),
            **extra,
        )

    @property
    def effects(self) -> list[tuple[int, str, int, int]]:
        if not pathlib.Path(self["FAULT_EFFECTS"]).exists():
            return []
        with sqlite3.connect(self["FAULT_EFFECTS"], timeout=60) as db:
            try:
                rows = db.execute("SELECT delivery, receiver, attempt, pid FROM effects").fetchall()
            except sqlite3.OperationalError:  # no receiver has run yet
                rows = []
        db.close()
        return rows


def wait_for(
    condition: t.Callable[[], t.Any], timeout: float = 60, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    env: Env, name: str, *args: str | pathlib.Path, cwd: pathlib.Path = ROOT
) -> subprocess.Popen[str]:
    """A server process whose output goes to a log file beside the test's files
    (a pipe nobody reads while it runs would fill, and block the process)."""
    log = pathlib.Path(env["FAULT_INSTANCE"]).parent / f"{name}-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, text=True, stdout=out, stderr=subprocess.STDOUT
        )
    process.log = log  # type: ignore[attr-defined]
    return process


def output_of(process: subprocess.Popen[str]) -> str:
    """What a process from :func:`spawn` wrote so far."""
    return t.cast(pathlib.Path, process.log).read_text()  # type: ignore[attr-defined]


def flask_command(env: Env, *args: str) -> subprocess.Popen[str]:
    return spawn(env, "flask", sys.executable, "-m", "flask", "--app", APP, "posweb", *args)


def drain(env: Env) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", APP, "posweb", "worker", "--once"],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal a process from :func:`spawn` (0: just wait for it); its exit code and output."""
    if process.poll() is None and sig:
        process.send_signal(sig)
    process.wait(timeout=60)
    return process.returncode, output_of(process)


def children(pid: int) -> list[int]:
    text = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def gunicorn(env: Env, port: int, *options: str) -> subprocess.Popen[str]:
    """gunicorn with 2 workers on loopback, ready to serve when this returns."""
    server = spawn(
        env,
        "gunicorn",
        sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
        "--timeout", "120", "--graceful-timeout", "5", *options, f"{APP}()",
    )  # fmt: skip
    wait_for(lambda: len(children(server.pid)) == 2 and get(port) == 200, 60, "gunicorn")
    return server


def post(port: int, body: bytes, path: str = "/dealpos/payment-created") -> int | None:
    """The status DealPOS would see, or ``None`` when the connection broke."""
    return _status(port, "POST", path, body, HEADERS, timeout=60)


def get(port: int, path: str = "/health") -> int | None:
    return _status(port, "GET", path, None, {}, timeout=10)


def _status(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float
) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionError, http.client.HTTPException, OSError):
        return None
    finally:
        connection.close()


def payment(n: int, tag: str = "") -> bytes:
    body = json.loads(sample("payment_created"))
    body.update(ID=f"fault-{tag}{n}", Number=f"FLT-{n:05d}", Amount=n)
    return json.dumps(body).encode()


def stored_by_body(inbox: Inbox) -> dict[bytes, Delivery]:
    accepted = Filter(event=["payment_created"], status=["pending", "failed", "processed", "dead"])
    return {d.raw: d for d in inbox.deliveries(accepted, limit=None)}


def assert_every_200_processed_once(
    env: Env, inbox: Inbox, answered: dict[bytes, list[t.Any]]
) -> None:
    """The invariant: each body answered 200 is stored and processed, each
    receiver ran exactly once for it, and nothing is left pending."""
    ok = {body for body, statuses in answered.items() if 200 in statuses}
    stored = stored_by_body(inbox)
    for body in ok:
        delivery = stored.get(body)
        assert delivery is not None, "a delivery answered 200 is missing"
        assert delivery.status == "processed", delivery
    runs = collections.Counter(
        (delivery, receiver) for delivery, receiver, _, _ in env.effects if receiver in PAYMENT
    )
    processed = {d.id for d in stored.values() if d.status == "processed"}
    assert processed == {d.id for d in stored.values()}  # nothing left pending or failed
    for receiver in ("ledger", "mailer"):
        assert {d for (d, r) in runs if r == receiver} == processed
    assert set(runs.values()) <= {1}


REDIS = shutil.which("redis-server")


class Redis:
    """A redis-server of this test's own, on a free port (no persistence)."""

    def __init__(self, folder: pathlib.Path) -> None:
        assert REDIS, "redis-server is needed (Debian: apt-get install redis-server)"
        self.port, self.folder = free_port(), folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                t.cast(str, REDIS),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ping, 30, "redis")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
