"""Celery dispatch with real parts: a Redis server and ``celery worker`` processes
(prefork), gunicorn in front; never ``task_always_eager``.

The invariant, as in the fault suite: every delivery answered 200 is processed,
and each receiver ran once for it (at least once where a worker is killed in
the middle of a receiver, as documented).
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
import typing as t
from collections.abc import Iterator

import pytest
import redis

from flask_posweb.dispatch.celery import relay
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.sending import sample

from .conftest import PG_URL
from .conftest import reset_postgresql
from .servers import ROOT
from .servers import Env
from .servers import Redis
from .servers import assert_every_200_processed_once
from .servers import children
from .servers import free_port
from .servers import gunicorn
from .servers import output_of
from .servers import payment
from .servers import post
from .servers import spawn
from .servers import stop
from .servers import stored_by_body
from .servers import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_server(tmp_path: pathlib.Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    server.start()
    yield server
    server.stop()


def celery_env(tmp_path: pathlib.Path, database_url: str, redis: Redis) -> Env:
    return Env.of(tmp_path, database_url, FAULT_DISPATCH="celery", FAULT_BROKER=redis.url)


@pytest.fixture
def env(tmp_path: pathlib.Path, database_url: str, redis_server: Redis) -> Env:
    return celery_env(tmp_path, database_url, redis_server)


@pytest.fixture
def inbox(env: Env) -> Iterator[Inbox]:
    store = Inbox.from_url(env["FAULT_DATABASE_URL"])
    yield store
    store.close()


class Workers:
    """``celery worker`` processes (prefork) for one test, stopped at its end.

    Supervised as in production (systemd's ``Restart=always``): a worker that
    exits on its own is started again. Celery 5.7's worker sometimes dies of an
    ``AttributeError`` inside kombu when Redis goes away mid-reconnect; a
    supervisor is how deployments keep workers running anyway. A worker the
    test kills on purpose is not restarted (:meth:`forget`).
    """

    def __init__(self, env: Env) -> None:
        self.env = env
        self.started: list[subprocess.Popen[str]] = []
        self._wanted: dict[str, tuple[subprocess.Popen[str], int]] = {}
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._supervise, daemon=True).start()

    def start(self, name: str, concurrency: int = 2) -> subprocess.Popen[str]:
        worker = spawn(
            self.env,
            f"celery-{name}",
            sys.executable, "-m", "celery", "-A", "tests.celery_worker:celery_app",
            "worker", "--pool", "prefork", "--concurrency", str(concurrency),
            "--hostname", f"{name}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        )  # fmt: skip
        with self._lock:
            self.started.append(worker)
            self._wanted[name] = (worker, concurrency)
        wait_for(lambda: len(children(worker.pid)) == concurrency, 60, f"celery worker {name}")
        return worker

    def forget(self, worker: subprocess.Popen[str]) -> None:
        """The test is about to stop or kill ``worker``: do not restart it."""
        with self._lock:
            self._wanted = {n: w for n, w in self._wanted.items() if w[0] is not worker}

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                dead = [(n, c) for n, (w, c) in self._wanted.items() if w.poll() is not None]
            for name, concurrency in dead:
                self.restarts += 1
                self.start(name, concurrency)

    def stop_all(self) -> list[str]:
        self._stop.set()
        outputs = []
        for worker in self.started:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            outputs.append(output_of(worker))
        return outputs


@pytest.fixture
def workers(env: Env) -> Iterator[Workers]:
    started = Workers(env)
    yield started
    started.stop_all()


def send_all(port: int, bodies: list[bytes], threads: int = 32) -> dict[bytes, list[int | None]]:
    answered: dict[bytes, list[int | None]] = collections.defaultdict(list)
    lock = threading.Lock()

    def send(body: bytes) -> None:
        status = post(port, body)
        with lock:
            answered[body].append(status)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, bodies))
    return answered


def all_processed(inbox: Inbox, count: int) -> bool:
    return inbox.counts(Filter(event=["payment_created"]))["processed"] == count


def test_every_delivery_is_dispatched_by_the_celery_workers(
    env: Env, inbox: Inbox, workers: Workers
) -> None:
    worker = workers.start("w1")
    port = free_port()
    server = gunicorn(env, port)
    web = set(children(server.pid))
    try:
        answered = send_all(port, [payment(n) for n in range(1000)])
        assert {s for statuses in answered.values() for s in statuses} == {200}
        wait_for(lambda: all_processed(inbox, 1000), 180, "1,000 deliveries processed")
    finally:
        stop(server)
    assert_every_200_processed_once(env, inbox, answered)
    pids = {pid for _, _, _, pid in env.effects}
    assert pids <= set(children(worker.pid)) and not pids & web  # run by the workers
    # Each attempt's recorded outcome clears the mark of the task that carried it.
    assert {d.enqueued_at for d in stored_by_body(inbox).values()} == {None}


def test_workers_killed_mid_receiver_and_with_tasks_in_hand(
    env: Env, inbox: Inbox, workers: Workers
) -> None:
    """The pool process running a receiver is SIGKILLed: its delivery is still
    processed (the receiver runs again: at least once) and nothing else runs
    twice. Then a worker's main process is SIGKILLed with tasks it had
    reserved: the other worker processes them within the lease plus the
    relay's interval, not the broker's visibility timeout (an hour here)."""
    env.update(FAULT_LEASE="3", FAULT_SLOW_SECONDS="20", FAULT_REQUEUE_AFTER="2")
    first = workers.start("w1", concurrency=1)
    port = free_port()
    server = gunicorn(env, port)
    try:
        early = send_all(port, [payment(n, "early") for n in range(10)], threads=4)
        wait_for(lambda: all_processed(inbox, 10), 60, "the first deliveries")
        assert post(port, sample("shift_closed"), "/dealpos/shift-closed") == 200
        slow = lambda: [(pid, r) for _, r, _, pid in env.effects if r.startswith("slow")]  # noqa: E731
        wait_for(lambda: slow(), 60, "the slow receiver")
        ((victim, _),) = slow()
        assert victim in children(first.pid)  # a pool process of the worker
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: inbox.counts(Filter(event=["shift_closed"]))["processed"] == 1,
            60,
            "the killed delivery to be processed",
        )
        runs = [(r, attempt) for _, r, attempt, _ in env.effects if r.startswith("slow")]
        assert runs == [("slow-started", 1), ("slow-started", 2), ("slow-finished", 2)]
        assert_every_200_processed_once(env, inbox, early)  # nothing else ran again

        # Now a worker's main process dies with tasks reserved (prefetched).
        second = workers.start("w2", concurrency=1)
        workers.forget(first)
        stop(first)  # w1 leaves quietly; then w3 joins w2, to be killed
        killed = workers.start("w3", concurrency=1)
        bodies = [payment(n, "reserved") for n in range(40)]
        answered = send_all(port, bodies, threads=8)
        pool = children(killed.pid)
        workers.forget(killed)
        os.kill(killed.pid, signal.SIGKILL)  # main process: its reserved tasks stay unacked
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: all_processed(inbox, 50), 120, "the reserved deliveries")
        # lease (3 s) + requeue (2 s) + relay polls: seconds, not the hour
        assert time.monotonic() - killed_at < 60
        assert second.poll() is None
    finally:
        stop(server)
    assert {s for statuses in answered.values() for s in statuses} == {200}
    stored = stored_by_body(inbox)
    assert {stored[body].status for body in bodies} == {"processed"}
    runs = collections.Counter((d, r) for d, r, _, _ in env.effects if not r.startswith("slow"))
    ids = {stored[body].id for body in bodies}
    for receiver in ("ledger", "mailer"):  # at least once each ...
        assert {d for (d, r) in runs if r == receiver} >= ids
    # ... and twice only for the delivery the killed pool process had in hand
    assert len({d for (d, r), n in runs.items() if n > 1}) <= 1


def test_a_broker_down_costs_no_delivery(
    env: Env, inbox: Inbox, workers: Workers, redis_server: Redis
) -> None:
    workers.start("w1")
    port = free_port()
    server = gunicorn(env, port)
    try:
        before = send_all(port, [payment(n, "before") for n in range(20)])
        redis_server.stop()
        started = time.monotonic()
        during = send_all(port, [payment(n, "during") for n in range(50)], threads=8)
        took = time.monotonic() - started
        assert {s for statuses in during.values() for s in statuses} == {200}  # stored: 200
        assert took < 60  # each waited at most about a second for the broker
        redis_server.start()  # the same port: web processes and workers reconnect
        wait_for(lambda: all_processed(inbox, 70), 120, "the deliveries after the outage")
    finally:
        stop(server)
    assert_every_200_processed_once(env, inbox, {**before, **during})


def test_two_web_nodes_two_workers_and_duplicates_sent_to_both(
    tmp_path: pathlib.Path, redis_server: Redis
) -> None:
    """Multi-node: two gunicorn instances (two web nodes) and two Celery workers on
    one inbox (PostgreSQL when the suite has one), 3,000 deliveries spread over
    both nodes, with duplicates sent to both: each ran exactly once."""
    url = PG_URL or f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    if PG_URL:
        reset_postgresql(PG_URL)
    env = celery_env(tmp_path, url, redis_server)
    inbox = Inbox.from_url(url)
    workers = Workers(env)
    ports = [free_port(), free_port()]
    nodes = [gunicorn(env, port) for port in ports]
    try:
        workers.start("w1", concurrency=1)
        workers.start("w2", concurrency=1)
        bodies = [payment(n, "multi") for n in range(3000)]
        rng = random.Random(11)
        duplicates = rng.sample(bodies, 300)
        work = [(ports[n % 2], body) for n, body in enumerate(bodies)]
        work += [(ports[0], body) for body in duplicates] + [
            (ports[1], body) for body in duplicates
        ]
        rng.shuffle(work)
        answered: dict[bytes, list[int | None]] = collections.defaultdict(list)
        lock = threading.Lock()

        def send(item: tuple[int, bytes]) -> None:
            status = post(*item)
            with lock:
                answered[item[1]].append(status)

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            list(pool.map(send, work))
        received = time.monotonic() - started
        wait_for(lambda: all_processed(inbox, 3000), 300, "3,000 deliveries processed")
        drained = time.monotonic() - started
        assert {s for statuses in answered.values() for s in statuses} == {200}
        assert_every_200_processed_once(env, inbox, answered)
        print(
            f"\nmulti-node ({'PostgreSQL' if PG_URL else 'SQLite'}): {len(work)} requests "
            f"received in {received:.1f} s ({len(work) / received:.0f}/s over two nodes); "
            f"3,000 deliveries processed by two Celery workers in {drained:.1f} s "
            f"({3000 / drained:.0f}/s end to end)"
        )
    finally:
        for node in nodes:
            stop(node)
        workers.stop_all()
        inbox.close()


# -- without servers -------------------------------------------------------------------


def celery_flask_app(tmp_path: pathlib.Path, broker: str | None, **config: t.Any) -> t.Any:
    from flask import Flask

    from flask_posweb import PosWeb

    from .fault_app import celery_init_app

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(
        TESTING=True,
        POSWEB_API_KEYS=["k" * 16],
        POSWEB_DISPATCH="celery",
        POSWEB_DATABASE_URL=f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
        CELERY={"broker_url": broker, "broker_connection_retry_on_startup": False},
        **config,
    )
    app.register_blueprint(PosWeb().blueprint, url_prefix="/dealpos")
    if broker is not None:
        celery_init_app(app)  # after the blueprint: looked up when first needed
    return app


def test_without_a_celery_app_the_error_says_how(tmp_path: pathlib.Path) -> None:
    from flask_posweb.exceptions import ConfigurationError
    from flask_posweb.testing import PosWebClient

    app = celery_flask_app(tmp_path, None)
    with pytest.raises(ConfigurationError, match="app.extensions\\['celery'\\]"):
        from flask_posweb.dispatch.celery import celery_app_of

        celery_app_of(app)
    # The delivery is stored (200) all the same: the relay sends it once set up.
    response = PosWebClient(app).deliver("payment_created")
    assert response.status_code == 200


@pytest.mark.parametrize("broker", ["refused", "silent"])
def test_a_broker_that_is_down_or_hangs_costs_a_request_nothing(
    tmp_path: pathlib.Path, broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    from flask_posweb.state import get_state
    from flask_posweb.testing import PosWebClient

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if broker == "refused":
        listener.close()  # nobody there
    else:
        listener.listen(16)  # accepts connections, never answers
    try:
        app = celery_flask_app(
            tmp_path, f"redis://127.0.0.1:{port}/0", POSWEB_CELERY_PUBLISH_TIMEOUT=0.5
        )
        client = PosWebClient(app)
        started = time.monotonic()
        responses = [client.deliver("payment_created", payment(n)) for n in range(5)]
        took = time.monotonic() - started
        assert [r.status_code for r in responses] == [200] * 5
        assert took < 2  # the answers wait for the inbox, never for the broker
        inbox = get_state(app).require_inbox()
        assert inbox.counts()["pending"] == 5  # stored, for the relay
        # Once the thread knows the broker failed (within about the timeout),
        # every one is marked as never sent: the relay sends them at its first
        # look once the broker is back.
        deadline = time.monotonic() + 10
        while {d.enqueued_at for d in inbox.deliveries()} != {None}:
            assert time.monotonic() < deadline, "not marked unsent"
            time.sleep(0.05)
        assert "not sent" in caplog.text
        dispatch = get_state(app).require_dispatch()
        assert relay(dispatch.dispatcher, dispatch.mode) == 0  # while failing, not even tried
    finally:
        listener.close()


def test_tasks_go_in_batches_on_one_connection(
    tmp_path: pathlib.Path, redis_server: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requests queue their tasks and are answered; the thread sends what
    queued meanwhile on the connection it keeps."""
    from flask_posweb.dispatch import celery as celery_mode
    from flask_posweb.testing import PosWebClient

    app = celery_flask_app(tmp_path, redis_server.url)
    sent: list[t.Any] = []
    real = celery_mode.Publisher._publish

    def publish(self: t.Any, dispatcher: t.Any, batch: t.Any, connection: t.Any) -> t.Any:
        time.sleep(0.2)  # a slow broker: requests queue up behind it
        kept = real(self, dispatcher, batch, connection)
        sent.append((len(batch), kept))
        return kept

    monkeypatch.setattr(celery_mode.Publisher, "_publish", publish)
    client = PosWebClient(app)
    started = time.monotonic()
    for n in range(20):
        assert client.deliver("payment_created", payment(n)).status_code == 200
    assert time.monotonic() - started < 2  # not 20 x 0.2 s
    deadline = time.monotonic() + 10
    while sum(size for size, _ in sent) < 20:
        assert time.monotonic() < deadline, sent
        time.sleep(0.05)
    assert len(sent) < 20  # batches
    assert len({id(kept) for _, kept in sent}) == 1 and sent[0][1] is not None
    with redis.Redis.from_url(redis_server.url) as broker:
        messages = broker.lrange("celery", 0, -1)
    # Fewer tasks than deliveries (one per merchant and batch), every delivery in one.
    carried = []
    for message in messages:
        args, kwargs, _ = json.loads(base64.b64decode(json.loads(message)["body"]))
        carried += [args[0], *kwargs.get("also", [])]
    assert len(messages) < 20 and sorted(carried) == sorted(d.id for d in inbox_of(app))
    assert all(d.enqueued_at is not None for d in inbox_of(app))


def inbox_of(app: t.Any) -> list[t.Any]:
    from flask_posweb.state import get_state

    return get_state(app).require_inbox().deliveries(limit=None)


def test_one_task_carries_a_merchants_deliveries_in_turn() -> None:
    from flask_posweb.dispatch.celery import TASK_BATCH
    from flask_posweb.dispatch.celery import tasks_for

    burst = [(n, "acme") for n in range(TASK_BATCH + 2)] + [(100, "bravo"), (101, None)]
    assert tasks_for(burst) == [
        ("acme", list(range(TASK_BATCH))),
        ("acme", [TASK_BATCH, TASK_BATCH + 1]),
        ("bravo", [100]),
        (None, [101]),
    ]
    interleaved = tasks_for([(1, "acme"), (2, "bravo"), (3, "acme")])
    assert interleaved == [("acme", [1, 3]), ("bravo", [2])]


def test_celery_is_imported_only_in_its_mode() -> None:
    code = (
        "import sys, flask\n"
        "from flask_posweb import PosWeb\n"
        "app = flask.Flask('x'); app.config.update(TESTING=True, POSWEB_API_KEYS=['k' * 16])\n"
        "PosWeb(app)\n"
        "print('celery' in sys.modules, 'kombu' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False False", done.stderr
