"""Fault tests under real servers on loopback: gunicorn with several workers, one
killed mid-run; the whole server killed and restarted with no new traffic; the
store read-only, full or stopped; a poisoned group commit; dispatch workers
killed, stopped, and run side by side.

Bounded in time: every wait has a deadline. Run on SQLite, and on PostgreSQL
when ``POSWEB_TEST_DATABASE_URL`` is set. The invariant every test checks:
no delivery answered 200 is missing afterwards, and each was processed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import threading
import time
import typing as t
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from flask_posweb.exceptions import StoreError
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.sending import sample

from .conftest import LEDGER
from .servers import Env
from .servers import assert_every_200_processed_once
from .servers import children
from .servers import drain
from .servers import flask_command
from .servers import free_port
from .servers import get
from .servers import gunicorn
from .servers import output_of
from .servers import payment
from .servers import post
from .servers import stop
from .servers import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: pathlib.Path, database_url: str) -> Env:
    if database_url.startswith("sqlite"):
        # A folder of its own: the outages make it read-only, and the servers'
        # logs (beside the instance) must stay writable meanwhile.
        (tmp_path / "store").mkdir()
        database_url = f"sqlite:///{tmp_path / 'store' / 'inbox.sqlite3'}"
    return Env.of(tmp_path, database_url)


@pytest.fixture
def inbox(env: Env) -> Iterator[Inbox]:
    store = Inbox.from_url(env["FAULT_DATABASE_URL"])
    yield store
    store.close()


def test_gunicorn_worker_killed_mid_run_loses_nothing_acknowledged(env: Env, inbox: Inbox) -> None:
    port = free_port()
    server = gunicorn(env, port)
    dispatcher = flask_command(env, "worker")
    try:
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
    assert len([b for b, s in answered.items() if 200 in s]) > 2500  # most succeeded
    assert_every_200_processed_once(env, inbox, answered)


def test_a_restart_with_orphans_needs_no_new_traffic(env: Env, inbox: Inbox) -> None:
    """Inbox 0.2, finding 3: the whole server is killed while its requests are
    dispatching; after a restart, a health check alone gets them processed."""
    env.update(FAULT_DISPATCH="inline", FAULT_LEASE="5", FAULT_SLOW_SECONDS="60")
    port = free_port()
    server = gunicorn(env, port, "--threads", "4")  # four requests in hand at once
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        shifts = [
            sample("shift_closed").replace(b'"ID": "', f'"ID": "{n}'.encode()) for n in range(4)
        ]
        pending = [pool.submit(post, port, body, "/dealpos/shift-closed") for body in shifts]
        started = lambda: [r for _, r, _, _ in env.effects if r == "slow-started"]  # noqa: E731
        wait_for(lambda: len(started()) == 4, 60, "the receivers")
        for pid in [*children(server.pid), server.pid]:  # the whole server, at once
            os.kill(pid, signal.SIGKILL)
        server.wait(timeout=60)
        assert all(f.result(timeout=60) is None for f in pending)  # DealPOS saw no answer
    orphans = inbox.deliveries(Filter(event=["shift_closed"]))
    assert len(orphans) == 4 and all(d.status == "pending" for d in orphans)  # stored first
    env["FAULT_SLOW_SECONDS"] = "0"
    restarted = gunicorn(env, port)  # its readiness check is GET /health: no webhook at all
    try:
        wait_for(
            lambda: all(
                d.status == "processed" for d in inbox.deliveries(Filter(event=["shift_closed"]))
            ),
            60,
            "the orphans to be processed",
        )
    finally:
        stop(restarted)
    finished = [r for _, r, _, _ in env.effects if r == "slow-finished"]
    assert len(finished) == 4


def test_an_outcome_not_yet_written_is_run_again_not_lost(env: Env, inbox: Inbox) -> None:
    """Inline mode defers a request's outcome to the process's next commit: a
    worker killed before that runs the receivers again once its lease is over
    (at least once); a worker stopped gracefully writes it on its way out."""
    env.update(FAULT_DISPATCH="inline", FAULT_LEASE="3", FAULT_SETTLE_DELAY="600")
    port = free_port()
    server = gunicorn(env, port)
    try:
        assert post(port, payment(1)) == 200
        (first,) = inbox.deliveries(Filter(event=["payment_created"]))
        assert first.status == "pending" and first.locked_by  # ran, its outcome not written
        assert {(d, r) for d, r, _, _ in env.effects} == {
            (first.id, "ledger"),
            (first.id, "mailer"),
        }
        workers = children(server.pid)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: len(set(children(server.pid)) - set(workers)) == 2,
            60,
            "gunicorn to restart its workers",
        )
        # Any request starts a new worker's background thread, which takes the
        # delivery again once the dead worker's lease has run out.
        wait_for(
            lambda: get(port) and inbox.get(first.id).status == "processed",  # type: ignore[union-attr]
            60,
            "the delivery to run again",
        )
        again = inbox.get(first.id)
        assert again is not None and again.attempts == 2
        assert post(port, payment(2)) == 200
        second = next(
            d for d in inbox.deliveries(Filter(event=["payment_created"])) if d.id != first.id
        )
        assert second.status == "pending"
    finally:
        code, output = stop(server)  # SIGTERM: the workers write what they deferred
    assert code == 0, output[-2000:]
    assert inbox.get(second.id).status == "processed"  # type: ignore[union-attr]
    runs = collections.Counter((d, r) for d, r, _, _ in env.effects)
    assert runs == {
        (first.id, "ledger"): 2,
        (first.id, "mailer"): 2,
        (second.id, "ledger"): 1,
        (second.id, "mailer"): 1,
    }


@contextlib.contextmanager
def read_only(env: Env, *, kick_after: bool = True) -> Iterator[None]:
    """The store refuses writes: the SQLite folder remounted read-only, or the
    PostgreSQL database switched to read-only transactions.

    :param kick_after: PostgreSQL: end the sessions opened meanwhile when it is
        over (theirs stay read-only for life); ``False`` leaves them, as an
        operator who turned it off again would.
    """
    url = env["FAULT_DATABASE_URL"]
    if url.startswith("sqlite"):
        folder = str(pathlib.Path(url.removeprefix("sqlite:///")).parent)
        assert (
            os.system(f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}") == 0
        )
        try:
            yield
        finally:  # lazily: the servers' open files keep the mount busy until they let go
            assert os.system(f"umount -l {folder}") == 0
        return
    database = sa.engine.make_url(url).database
    admin = ["su", "postgres", "-c"]
    subprocess.run(
        [*admin, f"psql -qc 'ALTER DATABASE {database} SET default_transaction_read_only = on'"],
        check=True,
    )
    kick = (
        'psql -qc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()\""
    )
    subprocess.run([*admin, kick], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(
            [
                *admin,
                f"psql -qc 'ALTER DATABASE {database} SET default_transaction_read_only = off'",
            ],
            check=True,
        )
        if kick_after:
            subprocess.run([*admin, kick], check=True, capture_output=True)


def _store_outage(
    env: Env,
    inbox: Inbox,
    outage: t.Callable[[Env], t.ContextManager[None]],
    *,
    start_inside: bool = False,
) -> None:
    """Deliveries before, during and after an outage of the store: those during
    it are answered 503 with Retry-After (never a 500, never a 200 not stored),
    and DealPOS's retries succeed once the store is back.

    :param start_inside: the server (re)starts while the store is out, as after
        a deploy onto a read-only volume.
    """
    env.update(FAULT_DISPATCH="inline", FAULT_TIMEOUT="2")
    port = free_port()
    server = gunicorn(env, port)
    answered: dict[bytes, list[int | None]] = collections.defaultdict(list)
    try:
        for n in range(20):
            answered[payment(n, "before")].append(post(port, payment(n, "before")))
        during = [payment(n, "during") for n in range(20)]
        with outage(env):
            if start_inside:
                stop(server)
                server = gunicorn(env, port)
            for body in during:
                answered[body].append(post(port, body))
            assert {answered[b][0] for b in during} == {503}
        for body in during:  # DealPOS's retry, once the store is back
            try:
                wait_for(lambda b=body: post(port, b) == 200, 60, "the store to be back")  # type: ignore[misc]
            except AssertionError as exc:  # the server's log says why
                log = output_of(server)[-4000:]
                raise AssertionError(f"{exc}; the server's log ends:\n{log}") from None
            answered[body].append(200)
    finally:
        stop(server)
    drain(env)
    assert_every_200_processed_once(env, inbox, answered)
    assert len([b for b, s in answered.items() if 200 in s]) == 40


@pytest.mark.root
def test_a_read_only_store_answers_503_then_recovers(env: Env, inbox: Inbox) -> None:
    """Inbox 0.2, finding 9: a read-only inbox folder answered 500."""
    _store_outage(
        env, inbox, read_only, start_inside=env["FAULT_DATABASE_URL"].startswith("sqlite")
    )


@pytest.mark.root
def test_the_first_write_after_a_read_only_outage_succeeds(database_url: str) -> None:
    """A connection opened while the store refused writes is not kept for later
    ones: PostgreSQL keeps a session's ``default_transaction_read_only`` for its
    life, and a CI run once saw a deferred outcome fail on such a connection
    after the outage, until the delivery's lease ran out."""
    inbox = Inbox.from_url(database_url, timeout=1)
    try:
        admitted = inbox.admit(
            "payment_created", b'{"n": 0}', {}, receivers=LEDGER, owner="w", lease=60
        )
        inbox.close()  # SQLite: the connections made from here on see the read-only folder
        with read_only(Env(FAULT_DATABASE_URL=database_url), kick_after=False):
            for n in range(3):  # durable and relaxed writes refused, each on new connections
                with pytest.raises(StoreError):
                    inbox.admit("payment_created", b'{"n": %d}' % (n + 1), {}, receivers=LEDGER)
                with pytest.raises(StoreError):
                    inbox.finish(admitted.delivery, "w", [], "processed")
        assert inbox.admit("payment_created", b'{"n": "after"}', {}, receivers=LEDGER).new
        assert inbox.finish(admitted.delivery, "w", [], "processed")
    finally:
        inbox.close()


#: Holds an SQLite file open (its WAL shared memory with it) until stdin closes.
KEEPER = (
    "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
    "db.execute('SELECT count(*) FROM sqlite_master').fetchall(); "
    "print('open', flush=True); sys.stdin.read()"
)


@pytest.mark.root
def test_a_reader_pooled_while_read_only_does_not_fail_later_writes(
    tmp_path: pathlib.Path,
) -> None:
    """A CI run once waited 60 s in vain for a read-only SQLite store to recover:
    a reader pooled during the outage kept a read-only shared memory, which
    SQLite shares with every later connection of the process to that file."""
    folder = tmp_path / "store"
    folder.mkdir()
    url = f"sqlite:///{folder / 'inbox.sqlite3'}"
    inbox = Inbox.from_url(url, timeout=1)
    keeper = None
    try:
        inbox.admit("payment_created", b'{"n": 0}', {}, receivers=LEDGER)
        inbox.close()  # this process lets go; another keeps the file's shared memory
        keeper = subprocess.Popen(
            [sys.executable, "-c", KEEPER, str(folder / "inbox.sqlite3")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert keeper.stdout is not None and keeper.stdout.readline() == "open\n"
        with read_only(Env(FAULT_DATABASE_URL=url)):
            assert inbox.counts()["pending"] == 1  # reads work, and pool their connection
            with pytest.raises(StoreError):
                inbox.admit("payment_created", b'{"n": 1}', {}, receivers=LEDGER)
        assert inbox.admit("payment_created", b'{"n": 2}', {}, receivers=LEDGER).delivery
        assert inbox.counts()["pending"] == 2
    finally:
        if keeper is not None:
            keeper.communicate("", timeout=60)
        inbox.close()


@contextlib.contextmanager
def disk_full(env: Env) -> Iterator[None]:
    """SQLite: the instance folder is a small tmpfs, filled up. PostgreSQL: the
    server is stopped (as good as full, for a client)."""
    url = env["FAULT_DATABASE_URL"]
    if url.startswith("sqlite"):
        folder = pathlib.Path(url.removeprefix("sqlite:///")).parent
        filler = folder / "filler"
        # Unbuffered: the write that finds the disk full fails here, and closing
        # has nothing left to flush (a buffered close raised ENOSPC in a CI run).
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as out:
            while True:
                out.write(b"\0" * 65536)
        try:
            yield
        finally:
            filler.unlink()
        return
    version = sorted(os.listdir("/usr/lib/postgresql"), key=int)[-1]
    subprocess.run(["pg_ctlcluster", version, "main", "stop", "-m", "fast"], check=True)
    try:
        yield
    finally:
        subprocess.run(["pg_ctlcluster", version, "main", "start"], check=True)
        wait_for(
            lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0, 60
        )


@pytest.fixture
def small_disk(env: Env, tmp_path: pathlib.Path) -> Iterator[None]:
    """The SQLite inbox on a 4 MiB tmpfs (PostgreSQL: nothing to do)."""
    if not env["FAULT_DATABASE_URL"].startswith("sqlite"):
        yield
        return
    folder = tmp_path / "disk"
    folder.mkdir()
    assert os.system(f"mount -t tmpfs -o size=4m tmpfs {folder}") == 0
    env["FAULT_DATABASE_URL"] = f"sqlite:///{folder / 'inbox.sqlite3'}"
    try:
        yield
    finally:
        os.system(f"umount {folder}")


@pytest.mark.root
def test_a_full_disk_answers_503_then_recovers(env: Env, small_disk: None) -> None:
    inbox = Inbox.from_url(env["FAULT_DATABASE_URL"])
    try:
        _store_outage(env, inbox, disk_full)
    finally:
        inbox.close()


def test_a_poisoned_group_commit_fails_only_the_bad_writes(env: Env, inbox: Inbox) -> None:
    """Inbox 0.2, finding 7: in 0.1 one bad write failed the group commit of its
    neighbours (178 of 1,000 got 500 on SQLite, 205 got 503 on PostgreSQL)."""
    env.update(FAULT_DISPATCH="worker")
    port = free_port()
    server = gunicorn(env, port, "--threads", "8")  # threads: writes share commits
    order = json.loads(sample("loyalty_order_complete"))
    poison = [
        (json.dumps({**order, "ID": "x" * 10_000}).encode(), "/dealpos/loyalty/order-complete"),
        (
            payment(0, "poison").replace(b'"Outlet": "Kemang"', b'"Outlet": "\\ud800"'),
            "/dealpos/payment-created",
        ),
    ]
    work = [(payment(n, "good"), "/dealpos/payment-created") for n in range(1000)]
    work += [poison[n % 2] for n in range(60)]
    random.Random(3).shuffle(work)
    answered: dict[bytes, list[int | None]] = collections.defaultdict(list)
    lock = threading.Lock()

    def send(item: tuple[bytes, str]) -> None:
        status = post(port, *item)
        with lock:
            answered[item[0]].append(status)

    try:
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            list(pool.map(send, work))
    finally:
        stop(server)
    good = {body for body, path in work if b"good" in body}
    assert {s for body in good for s in answered[body]} == {200}  # not one neighbour failed
    assert {s for body, _ in poison for s in answered[body]} <= {400, 422}
    drain(env)
    assert_every_200_processed_once(env, inbox, {b: answered[b] for b in good})


def _store_a_shift(env: Env) -> None:
    """One shift_closed delivery, stored through gunicorn (worker mode: not
    dispatched), and the server stopped."""
    port = free_port()
    server = gunicorn(env, port)
    try:
        assert post(port, sample("shift_closed"), "/dealpos/shift-closed") == 200
    finally:
        stop(server)


def test_a_dispatch_worker_killed_mid_delivery_is_replaced(env: Env, inbox: Inbox) -> None:
    env.update(FAULT_LEASE="1", FAULT_SLOW_SECONDS="30")
    _store_a_shift(env)
    (delivery,) = inbox.deliveries(Filter(event=["shift_closed"]))
    first = flask_command(env, "worker")
    wait_for(lambda: any(r == "slow-started" for _, r, _, _ in env.effects), 60, "the receiver")
    first.kill()  # SIGKILL, in the middle of the receiver
    first.wait(timeout=60)
    env["FAULT_SLOW_SECONDS"] = "0"
    time.sleep(1.2)  # the dead worker's lease runs out
    assert "1 delivery dispatched." in drain(env)
    after = inbox.get(delivery.id)
    assert after is not None and after.status == "processed" and after.attempts == 2
    runs = [(receiver, attempt) for _, receiver, attempt, _ in env.effects]
    # At least once: the receiver the dead worker was running runs again.
    assert runs == [("slow-started", 1), ("slow-started", 2), ("slow-finished", 2)]


def test_sigterm_lets_a_worker_finish_the_delivery_in_hand(env: Env, inbox: Inbox) -> None:
    env.update(FAULT_SLOW_SECONDS="1")
    _store_a_shift(env)
    worker = flask_command(env, "worker")
    wait_for(lambda: env.effects, 60, "the receiver")
    code, output = stop(worker)
    assert code == 0 and "Worker stopped." in output
    (delivery,) = inbox.deliveries(Filter(event=["shift_closed"]))
    assert delivery.status == "processed"
    assert [r for _, r, _, _ in env.effects] == ["slow-started", "slow-finished"]


def test_sigterm_does_not_wait_for_the_backlog(env: Env, inbox: Inbox) -> None:
    """A benchmark's worker, stopped with 20,000 deliveries due, drained them all
    first: a pass ran until nothing was due. It stops after the delivery in hand."""
    env.update(FAULT_SLOW_SECONDS="0.5")
    port = free_port()
    server = gunicorn(env, port)
    try:
        for n in range(12):
            body = json.loads(sample("shift_closed"))
            body["ID"] = f"shift-{n}"
            assert post(port, json.dumps(body).encode(), "/dealpos/shift-closed") == 200
    finally:
        stop(server)
    worker = flask_command(env, "worker")
    wait_for(lambda: env.effects, 60, "the first receiver")
    started = time.monotonic()
    code, output = stop(worker)
    assert code == 0 and "Worker stopped." in output
    assert time.monotonic() - started < 3  # not 12 x 0.5 s
    counts = inbox.counts(Filter(event=["shift_closed"]))
    assert counts["processed"] >= 1 and counts["pending"] >= 6, counts
    runs = [r for _, r, _, _ in env.effects]
    assert runs.count("slow-started") == runs.count("slow-finished") == counts["processed"]


def test_several_workers_never_handle_one_delivery_twice(env: Env, inbox: Inbox) -> None:
    port = free_port()
    server = gunicorn(env, port, "--threads", "4")
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda n: post(port, payment(n)), range(300)))
    finally:
        stop(server)
    assert set(statuses) == {200}
    workers = [flask_command(env, "worker", "--once") for _ in range(3)]
    outputs = [stop(w, 0)[1] for w in workers]  # signal 0: just wait for them
    total = sum(
        int(n) for o in outputs for n in re.findall(r"(\d+) deliver(?:y|ies) dispatched", o)
    )
    assert total == 300, outputs
    runs = collections.Counter((d, r) for d, r, _, _ in env.effects)
    assert set(runs.values()) == {1}
    assert inbox.counts()["processed"] == 300
