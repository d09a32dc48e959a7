"""The measurements, each one side by side with its baseline in the same run."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from flask import Flask

from flask_posweb import EVENTS
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import ReceiverSet
from flask_posweb.payload import load
from flask_posweb.payload import parse
from flask_posweb.sending import sample

from . import apps

ROOT = pathlib.Path(__file__).parent.parent
HEADERS = {"X-API-Key": apps.API_KEY, "Content-Type": "application/json"}
PAYMENT = json.loads(sample("payment_created"))
WRK_SCRIPT = pathlib.Path(__file__).parent / "post.lua"


def payment(n: int, tag: str = "") -> bytes:
    """A unique payment body: every delivery is new to the inbox, as in production."""
    return json.dumps({**PAYMENT, "ID": f"{tag}p-{n}", "Number": f"PAY-{n}"}).encode()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- 1. per request, in process --------------------------------------------------------


def per_request(variant: str, requests: int, directory: str) -> dict[str, float]:
    """Median and p99 microseconds per request through the Flask test client."""
    app = apps.create_app(variant, directory)
    client = app.test_client()
    for n in range(min(200, requests)):  # warm up: imports, caches, tables
        client.post("/dealpos/payment-created", data=payment(n, "warm"), headers=HEADERS)
    timings = []
    for n in range(requests):
        body = payment(n)
        started = time.perf_counter()
        response = client.post("/dealpos/payment-created", data=body, headers=HEADERS)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.get_data(as_text=True)
    _close(app)
    return {
        "median_us": statistics.median(timings) * 1e6,
        "p99_us": percentile(timings, 0.99) * 1e6,
    }


def _close(app: Flask) -> None:
    state = app.extensions.get("posweb")
    if state is not None:
        state.close()


def profile(variant: str, requests: int, directory: str) -> str:
    """Where the time of ``requests`` requests goes, as pyinstrument's text report."""
    from pyinstrument import Profiler

    app = apps.create_app(variant, directory)
    client = app.test_client()
    bodies = [payment(n, "prof") for n in range(requests)]
    client.post("/dealpos/payment-created", data=payment(0, "warm"), headers=HEADERS)
    profiler = Profiler(interval=0.0001)
    with profiler:
        for body in bodies:
            client.post("/dealpos/payment-created", data=body, headers=HEADERS)
    _close(app)
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


# -- 2. under a real server ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gunicorn(variant: str, options: list[str], directory: str) -> Iterator[tuple[int, int]]:
    """A gunicorn serving one variant on loopback; yields its port and pid."""
    port = free_port()
    env = {**os.environ, "BENCH_VARIANT": variant, "BENCH_DIR": directory, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            *options,
            "-b",
            f"127.0.0.1:{port}",
            "benchmarks.apps:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"gunicorn did not start for {variant}")
            time.sleep(0.1)
        # Every worker must be up before the load starts: wrk keeps its
        # connections, and those opened while one worker was still booting
        # would all stay on the other one.
        workers = int(options[options.index("-w") + 1])
        while len(_children(server.pid)) < workers:
            time.sleep(0.1)
        time.sleep(2)
        yield port, server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def _children(pid: int) -> list[str]:
    return pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("POST", "/dealpos/payment-created", payment(0, "up"), HEADERS)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wrk(port: int, seconds: int, connections: int) -> dict[str, float]:
    """Requests/s and p99 latency (ms) from wrk, every request a new payment."""
    output = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(WRK_SCRIPT),
            f"http://127.0.0.1:{port}/dealpos/payment-created",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return {"rps": rps, "p99_ms": float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]}


# -- 3. how cost grows -----------------------------------------------------------------


def invoice(lines: int) -> bytes:
    body = json.loads(sample("invoice_created"))
    line = body["Variants"][0]
    body["Variants"] = [{**line, "Code": f"SKU-{n}", "Quantity": n % 7 + 1} for n in range(lines)]
    return json.dumps(body).encode()


def validation(lines: int, repeats: int) -> dict[str, float]:
    """Parse and validate an invoice with ``lines`` line items: ms, and µs per line."""
    raw, event = invoice(lines), EVENTS["invoice_created"]
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        load(event, parse(raw))
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    return {"ms": median * 1e3, "us_per_line": median * 1e6 / lines}


def fill(path: str, rows: int) -> None:
    """Put ``rows`` processed deliveries in the inbox, fast (no sync: setup only)."""
    inbox = Inbox.from_url(f"sqlite:///{path}")
    inbox.counts()  # creates the tables
    inbox.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(" ")
    sql = (
        "INSERT INTO posweb_deliveries (inbox, event, status, raw, headers, outcomes, "
        "attempts, generation, replay, received_at, updated_at) "
        "VALUES ('default', 'payment_created', 'processed', ?, '{}', '[]', 1, 0, 0, ?, ?)"
    )
    for start in range(0, rows, 50_000):
        batch = [(f"fill-{n}".encode(), now, now) for n in range(start, min(rows, start + 50_000))]
        db.executemany(sql, batch)
        db.commit()
    db.close()


#: The receivers the benchmark's app has: what its deliveries expect.
RECEIVERS = ReceiverSet("payment_created", frozenset({"receiver_0"}))


def inbox_growth(stored: int, admits: int, directory: str) -> dict[str, float]:
    """Insert + duplicate check per delivery with ``stored`` deliveries already there:
    µs per new delivery (committed to disk, as in production), per duplicate, and
    per new delivery on the relaxed engine (no disk sync: the indexes' own cost)."""
    path = os.path.join(directory, f"growth-{stored}.sqlite3")
    fill(path, stored)
    inbox = Inbox.from_url(f"sqlite:///{path}")
    timings: dict[str, list[float]] = {"new_us": [], "duplicate_us": []}
    for n in range(admits):
        for kind, body in (("new_us", payment(n, "g")), ("duplicate_us", payment(n, "g"))):
            started = time.perf_counter()
            inbox.admit("payment_created", body, {}, receivers=RECEIVERS, resource=f"g{n}")
            timings[kind].append(time.perf_counter() - started)
    unsynced = []
    relaxed = Inbox(dataclasses.replace(inbox.engines, durable=inbox.engines.relaxed))
    for n in range(admits):
        started = time.perf_counter()
        relaxed.admit("payment_created", payment(n, "u"), {}, receivers=RECEIVERS, resource=f"u{n}")
        unsynced.append(time.perf_counter() - started)
    relaxed.close()
    inbox.close()
    result = {kind: statistics.median(values) * 1e6 for kind, values in timings.items()}
    return {**result, "new_without_sync_us": statistics.median(unsynced) * 1e6}


def receivers(count: int, inbox: bool, requests: int, directory: str) -> float:
    """Median µs per request with ``count`` receivers on the event."""
    app = apps.posweb(inbox=inbox, directory=directory, receivers=count)
    client = app.test_client()
    timings = []
    for n in range(requests):
        body = payment(n, f"r{count}{inbox}")
        started = time.perf_counter()
        client.post("/dealpos/payment-created", data=body, headers=HEADERS)
        timings.append(time.perf_counter() - started)
    _close(app)
    return statistics.median(timings) * 1e6


# -- 4. memory -----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def memory(checkpoints: list[int], directory: str) -> dict[int, int]:
    """RSS (KiB) of one gunicorn worker after each number of deliveries."""
    results = {}
    with gunicorn("posweb_sqlite", ["-w", "1"], directory) as (port, master):
        worker = int(_children(master)[0])
        sent = 0
        for checkpoint in checkpoints:
            _send(port, sent, checkpoint - sent)
            sent = checkpoint
            results[checkpoint] = rss_kib(worker)
    return results


def _send(port: int, start: int, count: int, threads: int = 4) -> None:
    def run(offset: int) -> None:
        for n in range(start + offset, start + count, threads):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", "/dealpos/payment-created", payment(n, "m"), HEADERS)
            assert connection.getresponse().status == 200
            connection.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@contextlib.contextmanager
def scratch() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="posweb-bench-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
