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
import typing as t
from collections.abc import Iterator

from flask import Flask

from flask_posweb import EVENTS
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import ReceiverSet
from flask_posweb.inbox.database import Database
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
def gunicorn(
    variant: str, options: list[str], directory: str, env: dict[str, str] | None = None
) -> Iterator[tuple[int, int]]:
    """A gunicorn serving one variant on loopback; yields its port and pid."""
    port = free_port()
    os.makedirs(directory, exist_ok=True)
    environ = {
        **os.environ,
        **(env or {}),
        "BENCH_VARIANT": variant,
        "BENCH_DIR": directory,
        "PYTHONPATH": str(ROOT),
    }
    with open(os.path.join(directory, "gunicorn.log"), "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *options, "-b", f"127.0.0.1:{port}",
             "benchmarks.apps:create_app()"],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if time.monotonic() > deadline or server.poll() is not None:
                log = pathlib.Path(directory, "gunicorn.log").read_text()[-3000:]
                raise RuntimeError(f"gunicorn did not start for {variant}:\n{log}")
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


def wrk(
    port: int, seconds: int, connections: int, script: str | os.PathLike[str] = WRK_SCRIPT
) -> dict[str, float]:
    """Requests/s and p99 latency (ms) from wrk, every request a new delivery
    (a payment, unless ``script`` says otherwise: see :func:`mix_script`)."""
    tag = f"w{time.monotonic_ns()}"  # no payment of this run repeats one of an earlier run
    done = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/dealpos/payment-created",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={**os.environ, "BENCH_TAG": tag},
    )
    if done.returncode:
        raise RuntimeError(f"wrk failed:\n{done.stdout}{done.stderr}")
    output = done.stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return {"rps": rps, "p99_ms": float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]}


#: The mix of the multi-merchant load: (event, share in tenths).
MIX = (("payment_created", 5), ("invoice_created", 3), ("product_updated", 2))
#: Merchants sending 20 times what each of the others sends.
HEAVY = 5


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def mix_script(path: str, keys: list[str]) -> str:
    """A wrk script posting the :data:`MIX` of events, each with a unique
    resource ID, each from one of ``keys`` (the first :data:`HEAVY` sending 20
    times as much as each of the others). Written to ``path``; returns it."""
    weights, total = [], 0
    for n in range(len(keys)):
        total += 20 if n < HEAVY and len(keys) > HEAVY else 1
        weights.append(total)
    events, paths, bodies, cumulative = [], [], [], 0
    for name, share in MIX:
        body = json.loads(sample(name))
        body[EVENTS[name].resource_key or "ID"] = "@@ID@@"
        cumulative += share
        events.append(str(cumulative))
        paths.append(_lua_string("/dealpos" + EVENTS[name].url_rule))
        bodies.append(_lua_string(json.dumps(body, separators=(",", ":"))))
    script = f"""
local keys = {{{", ".join(_lua_string(k) for k in keys)}}}
local weights = {{{", ".join(map(str, weights))}}}
local total = {total}
local mix = {{{", ".join(events)}}}
local paths = {{{", ".join(paths)}}}
local bodies = {{{", ".join(bodies)}}}
local counter = 0
local thread_id = 0
local tag = os.getenv("BENCH_TAG") or "t"
function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end
function init(args)
  math.randomseed(7919 * (id + 1))
end
local function pick(r)
  local low, high = 1, #weights
  while low < high do
    local middle = math.floor((low + high) / 2)
    if weights[middle] < r then low = middle + 1 else high = middle end
  end
  return low
end
function request()
  counter = counter + 1
  local key = keys[pick(math.random(total))]
  local roll, event = math.random(10), 1
  while mix[event] < roll do event = event + 1 end
  local body = (bodies[event]:gsub("@@ID@@", tag .. "-" .. id .. "-" .. counter))
  local headers = {{["Content-Type"] = "application/json", ["X-API-Key"] = key}}
  return wrk.format("POST", paths[event], headers, body)
end
"""
    pathlib.Path(path).write_text(script)
    return path


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
    engines = inbox.database.engines
    relaxed = Inbox(Database(dataclasses.replace(engines, durable=engines.relaxed)))
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
    with gunicorn("posweb_sqlite_inline", ["-w", "1"], directory) as (port, master):
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


# -- the durable floor's parts: the disk and the write lock ------------------------------


def fdatasync_us(directory: str, count: int = 300) -> float:
    """Median µs of one small write plus ``fdatasync``: what each durable commit waits for."""
    path = os.path.join(directory, "fdatasync.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    timings = []
    try:
        for n in range(count):
            os.pwrite(fd, os.urandom(512), (n % 64) * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            timings.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.remove(path)
    return statistics.median(timings) * 1e6


@contextlib.contextmanager
def _timed_lock_file(holds: list[float]) -> Iterator[None]:
    """Record how long each hold of the inbox's SQLite lock file lasts."""
    from flask_posweb.inbox import writer

    original = writer._LockFile.held

    @contextlib.contextmanager
    def held(self: t.Any, deadline: t.Any) -> Iterator[None]:
        with original(self, deadline):
            started = time.perf_counter()
            try:
                yield
            finally:
                holds.append(time.perf_counter() - started)

    writer._LockFile.held = held  # type: ignore[method-assign]
    try:
        yield
    finally:
        writer._LockFile.held = original  # type: ignore[method-assign]


def lock_hold(variant: str, deliveries: int, directory: str) -> dict[str, float]:
    """Write-lock hold per delivery (µs, median) and holds per delivery, one thread.

    For ``floor_sqlite`` the hold is its own ``flock``; for the inbox, every
    hold of its lock file (storing, and in ``inline`` mode recording the outcome).
    """
    os.makedirs(directory, exist_ok=True)
    holds: list[float] = []
    if variant == "floor_sqlite":
        app = apps.floor_sqlite(directory, holds)
        context: t.ContextManager[None] = contextlib.nullcontext()
    else:
        app = apps.create_app(variant, directory)
        context = _timed_lock_file(holds)
    client = app.test_client()
    client.post("/dealpos/payment-created", data=payment(0, "lock-warm"), headers=HEADERS)
    per_delivery = []
    with context:
        for n in range(deliveries):
            before = len(holds)
            response = client.post(
                "/dealpos/payment-created", data=payment(n, "lock"), headers=HEADERS
            )
            assert response.status_code == 200, response.get_data(as_text=True)
            per_delivery.append((sum(holds[before:]), len(holds) - before))
    _close(app)
    return {
        "hold_us": statistics.median(total for total, _ in per_delivery) * 1e6,
        "holds": statistics.mean(count for _, count in per_delivery),
    }


# -- servers the PostgreSQL and Celery variants need -------------------------------------


def reset_postgresql(url: str) -> None:
    """Drop the inbox's and the floor's tables: each variant starts empty."""
    import sqlalchemy as sa

    from flask_posweb.inbox.migrations import VERSION_TABLE
    from flask_posweb.inbox.tables import metadata

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            for table in [*(t.name for t in reversed(metadata.sorted_tables)), VERSION_TABLE]:
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
            connection.execute(sa.text("DROP TABLE IF EXISTS bench_floor"))
    finally:
        engine.dispose()


@contextlib.contextmanager
def redis_server(directory: str) -> Iterator[str]:
    """A redis-server of the benchmark's own (no persistence); yields its URL."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


# -- end to end: deliveries drained by two worker processes ------------------------------


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` for a while (the apps read their settings there)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def drain_rate(
    variant: str, count: int, directory: str, env: dict[str, str], workers: int = 2
) -> dict[str, float]:
    """Deliveries/s dispatched by ``workers`` processes, end to end.

    ``count`` deliveries are stored (and, in Celery mode, their tasks sent)
    while no worker runs; then the workers start, and the rate is taken
    between 10% and 90% of the deliveries processed, so that neither the
    workers' start nor the last stragglers count.
    """
    os.makedirs(directory, exist_ok=True)
    environ = {**env, "BENCH_VARIANT": variant, "BENCH_DIR": directory}
    with environment(environ):
        app = apps.create_app(variant, directory)
        client = app.test_client()
        tag = f"d{time.monotonic_ns()}"
        for n in range(count):
            response = client.post(
                "/dealpos/payment-created", data=payment(n, tag), headers=HEADERS
            )
            assert response.status_code == 200, response.get_data(as_text=True)
        _close(app)  # in Celery mode, waits for the tasks to be sent
        if variant.endswith("_celery"):
            command = [
                sys.executable, "-m", "celery", "-A", "benchmarks.celery_worker:celery_app",
                "worker", "-c", "1", "-l", "warning", "--without-gossip", "--without-mingle",
            ]  # fmt: skip
        else:
            command = [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "benchmarks.apps",
                "posweb",
                "worker",
            ]
        processes = []
        for n in range(workers):
            with open(os.path.join(directory, f"worker{n}.log"), "w") as log:
                name = ["-n", f"bench{n}@%h"] if variant.endswith("_celery") else []
                processes.append(
                    subprocess.Popen(
                        [*command, *name],
                        cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        app = apps.create_app(variant, directory)  # to read the inbox
        inbox = app.extensions["posweb"].require_inbox()
        marks: dict[float, float] = {}
        deadline = time.monotonic() + 600
        try:
            while len(marks) < 2:
                done = inbox.counts().get("processed", 0)
                now = time.monotonic()
                for share in (0.1, 0.9):
                    if share not in marks and done >= share * count:
                        marks[share] = now
                if now > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError(f"the {variant} workers stopped at {done} of {count}")
                time.sleep(0.01)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:  # a Celery worker's warm shutdown
                    process.kill()
                    process.wait(10)
            _close(app)
    return {"per_second": 0.8 * count / (marks[0.9] - marks[0.1])}


# -- many merchants: the quiet ones while one floods --------------------------------------


def _workers(variant: str, directory: str, count: int = 2) -> list[subprocess.Popen[bytes]]:
    """``count`` ``flask posweb worker`` processes of ``variant``."""
    processes = []
    for n in range(count):
        with open(os.path.join(directory, f"worker{n}.log"), "w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "benchmarks.apps", "posweb", "worker"],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_VARIANT": variant},
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    return processes


def quiet_latency(
    store: str, flood: int, quiet: int, directory: str, env: dict[str, str]
) -> dict[str, float]:
    """How long the quiet merchants' payments wait for a dispatcher (ms from
    arrival to their receiver's start), with two ``flask posweb worker``
    processes, while merchant ``m0000`` floods (``flood`` deliveries waiting at
    the start, more arriving throughout) or not (``flood = 0``).

    The quiet payments arrive at a steady 25 per second from 100 merchants;
    an idle worker looks for work every 50 ms (``POSWEB_POLL_INTERVAL``), so
    that the calm wait is the dispatch, not the poll.
    """
    variant = f"posweb_{store}_worker_merchants"
    os.makedirs(directory, exist_ok=True)
    environ = {
        **env,
        "BENCH_VARIANT": variant,
        "BENCH_DIR": directory,
        "BENCH_POLL_INTERVAL": "0.05",
    }
    with environment(environ):
        app = apps.create_app(variant, directory)
        client = app.test_client()
        tag = f"q{time.monotonic_ns()}"

        def post(merchant: int, n: int, kind: str) -> int:
            headers = {**HEADERS, "X-API-Key": apps.merchant_key(merchant)}
            response = client.post(
                "/dealpos/payment-created", data=payment(n, f"{tag}{kind}"), headers=headers
            )
            assert response.status_code == 200, response.get_data(as_text=True)
            return int(response.headers["X-PosWeb-Delivery"])

        for n in range(flood):  # the flooding merchant's backlog
            post(0, n, "f")
        stop = threading.Event()

        def flooding() -> None:
            flooder = app.test_client()
            n = flood
            while not stop.is_set():
                headers = {**HEADERS, "X-API-Key": apps.merchant_key(0)}
                flooder.post(
                    "/dealpos/payment-created", data=payment(n, f"{tag}f"), headers=headers
                )
                n += 1
                time.sleep(0.002)

        inbox = app.extensions["posweb"].require_inbox()
        processes = _workers(variant, directory)
        flooder = threading.Thread(target=flooding, daemon=True)
        ids = []
        try:
            # The workers are up (one quiet payment processed) before the clock runs.
            first = post(199, quiet, "w")
            deadline = time.monotonic() + 120
            while getattr(inbox.get(first), "status", None) != "processed":
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not start")
                time.sleep(0.05)
            if flood:
                flooder.start()
            started = time.monotonic()
            for n in range(quiet):
                ids.append(post(100 + n % 100, n, "q"))
                time.sleep(max(0.0, started + (n + 1) / 25 - time.monotonic()))
            stop.set()
            deadline = time.monotonic() + 300
            while True:
                found = [inbox.get(i) for i in ids]
                if all(d is not None and d.status == "processed" for d in found):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the quiet merchants' payments were not all processed")
                time.sleep(0.1)
        finally:
            stop.set()
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
        waits = [
            (dt.datetime.fromisoformat(d.outcomes[0]["started_at"]) - d.received_at).total_seconds()
            * 1000
            for d in found
            if d is not None
        ]
        left = inbox.counts().get("pending", 0)
        _close(app)
    return {
        "p50_ms": statistics.median(waits),
        "p99_ms": percentile(waits, 0.99),
        "flood_waiting": float(left),
    }


# -- what one delivery writes -----------------------------------------------------------


def wal_frames(variant: str, deliveries: int, directory: str) -> dict[str, float]:
    """Pages the SQLite inbox writes to its WAL per delivery, in total and per
    b-tree (table or index), one request at a time after 300 to warm it.

    In ``inline`` mode an outcome goes with the next delivery's commit, as it
    does under load; the last one is left out by counting after the requests.
    """
    import struct

    os.makedirs(directory, exist_ok=True)
    app = apps.create_app(variant, directory)
    client = app.test_client()
    path = os.path.join(directory, "posweb.sqlite3")
    for n in range(300):
        client.post("/dealpos/payment-created", data=payment(n, "wal-warm"), headers=HEADERS)
    time.sleep(0.5)  # the background thread settles the last outcome
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for n in range(deliveries):
        response = client.post("/dealpos/payment-created", data=payment(n, "wal"), headers=HEADERS)
        assert response.status_code == 200, response.get_data(as_text=True)
    data = pathlib.Path(path + "-wal").read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    pages = [
        struct.unpack(">I", data[offset : offset + 4])[0]
        for offset in range(32, len(data) - 23, 24 + page_size)
    ]
    owners = dict(db.execute("SELECT pageno, name FROM dbstat").fetchall())
    db.close()
    _close(app)
    found: dict[str, float] = {"total": len(pages) / deliveries}
    for page in pages:
        name = owners.get(page, "(free)")
        found[name] = found.get(name, 0) + 1 / deliveries
    return found
