"""Fault tests under real servers on loopback: gunicorn with several workers, one
killed mid-run; dispatch workers killed, stopped, and run side by side.

Bounded in time: every wait has a deadline. Run on SQLite, and on PostgreSQL
when ``POSWEB_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import json
import os
import pathlib
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import typing as t
from collections.abc import Iterator

import pytest

from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import dedup_key
from flask_posweb.sending import sample

ROOT = pathlib.Path(__file__).parent.parent
APP = "tests.fault_app:create_app"
HEADERS = {"Content-Type": "application/json", "X-API-Key": "fault-key-0123456789"}

pytestmark = pytest.mark.slow


class Env(dict[str, str]):
    """The environment every process of one test shares."""

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


@pytest.fixture
def env(tmp_path: pathlib.Path, database_url: str) -> Env:
    return Env(
        os.environ,
        PYTHONPATH=str(ROOT),
        FAULT_INSTANCE=str(tmp_path / "instance"),
        FAULT_DATABASE_URL=database_url,
        FAULT_EFFECTS=str(tmp_path / "effects.sqlite3"),
    )


@pytest.fixture
def inbox(env: Env) -> Iterator[Inbox]:
    store = Inbox.from_url(env["FAULT_DATABASE_URL"])
    yield store
    store.close()


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


def flask_command(env: Env, *args: str, **kwargs: t.Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", APP, "posweb", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


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
    if process.poll() is None:
        process.send_signal(sig)
    output, _ = process.communicate(timeout=60)
    return process.returncode, output


def children(pid: int) -> list[int]:
    text = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def post(port: int, body: bytes, path: str = "/dealpos/payment-created") -> int | None:
    """The status DealPOS would see, or ``None`` when the connection broke."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body, HEADERS)
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionError, http.client.HTTPException, OSError):
        return None
    finally:
        connection.close()


def payment(n: int) -> bytes:
    body = json.loads(sample("payment_created"))
    body.update(ID=f"fault-{n}", Number=f"FLT-{n:05d}", Amount=n)
    return json.dumps(body).encode()


def test_gunicorn_worker_killed_mid_run_loses_nothing_acknowledged(env: Env, inbox: Inbox) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "120",
            "--graceful-timeout",
            "5",
            f"{APP}()",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    dispatcher = flask_command(env, "worker")
    try:
        wait_for(
            lambda: len(children(server.pid)) == 2 and post(port, b"{}") == 422, 60, "gunicorn"
        )
        bodies = [payment(n) for n in range(3000)]
        rng = random.Random(7)
        work = bodies + rng.sample(bodies, 300)  # DealPOS's retries and duplicates
        rng.shuffle(work)
        answered: dict[bytes, list[int | None]] = collections.defaultdict(list)
        done = [0]
        killed: list[int] = []
        lock = threading.Lock()

        def send(body: bytes) -> None:
            status = post(port, body)
            with lock:
                answered[body].append(status)
                done[0] += 1
                if done[0] == 1000:  # mid-run: SIGKILL one web worker
                    victim = children(server.pid)[0]
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            list(pool.map(send, work))
        assert killed, "the worker was not killed"
        # gunicorn restarted the worker: the service is back.
        wait_for(
            lambda: len(children(server.pid)) == 2 and killed[0] not in children(server.pid),
            60,
            "gunicorn to restart the worker",
        )
        assert post(port, payment(99999)) == 200
    finally:
        stop(server)
    code, output = stop(dispatcher)
    assert code == 0 and "Worker stopped." in output
    drain(env)

    ok = {body for body, statuses in answered.items() if 200 in statuses}
    assert len(ok) > 2500  # most succeeded; the point is what follows
    accepted = Filter(event=["payment_created"], status=["pending", "failed", "processed", "dead"])
    stored = {d.dedup_key: d for d in inbox.select(accepted, limit=None)}
    for body in ok:  # every delivery answered 200 is in the store, and was processed
        delivery = stored.get(dedup_key("payment_created", body))
        assert delivery is not None and delivery.status == "processed"
    runs = collections.Counter((delivery, receiver) for delivery, receiver, _, _ in env.effects)
    processed = {d.id for d in stored.values() if d.status == "processed"}
    assert processed == {d.id for d in stored.values()}  # nothing left pending or failed
    for receiver in ("ledger", "mailer"):  # every receiver ran exactly once per delivery
        assert {d for (d, r) in runs if r == receiver} == processed
    assert set(runs.values()) == {1}


def test_a_dispatch_worker_killed_mid_delivery_is_replaced(env: Env, inbox: Inbox) -> None:
    env.update(FAULT_LEASE="1", FAULT_SLOW_SECONDS="30")
    delivery = inbox.admit("shift_closed", sample("shift_closed"), {}).delivery
    first = flask_command(env, "worker")
    wait_for(lambda: any(r == "slow-started" for _, r, _, _ in env.effects), 60, "the receiver")
    first.kill()  # SIGKILL, in the middle of the receiver
    first.communicate(timeout=60)
    env["FAULT_SLOW_SECONDS"] = "0"
    time.sleep(1.2)  # the dead worker's lease runs out
    assert "1 deliveries dispatched." in drain(env)
    after = inbox.get(delivery.id)
    assert after is not None and after.status == "processed" and after.attempts == 2
    runs = [(receiver, attempt) for _, receiver, attempt, _ in env.effects]
    # At least once: the receiver the dead worker was running runs again.
    assert runs == [("slow-started", 1), ("slow-started", 2), ("slow-finished", 2)]


def test_sigterm_lets_a_worker_finish_the_delivery_in_hand(env: Env, inbox: Inbox) -> None:
    env.update(FAULT_SLOW_SECONDS="1")
    delivery = inbox.admit("shift_closed", sample("shift_closed"), {}).delivery
    worker = flask_command(env, "worker")
    wait_for(lambda: env.effects, 60, "the receiver")
    code, output = stop(worker)
    assert code == 0 and "Worker stopped." in output
    after = inbox.get(delivery.id)
    assert after is not None and after.status == "processed"
    assert [r for _, r, _, _ in env.effects] == ["slow-started", "slow-finished"]


def test_several_workers_never_handle_one_delivery_twice(env: Env, inbox: Inbox) -> None:
    ids = {inbox.admit("payment_created", payment(n), {}).delivery.id for n in range(300)}
    workers = [flask_command(env, "worker", "--once") for _ in range(3)]
    outputs = [stop(w, 0)[1] for w in workers]  # signal 0: just wait for them
    total = sum(int(o.split()[0]) for o in outputs if o.strip())
    assert total == 300, outputs
    runs = collections.Counter((d, r) for d, r, _, _ in env.effects)
    assert set(runs.values()) == {1}
    assert {d for d, _ in runs} == ids
    assert inbox.counts()["processed"] == 300
