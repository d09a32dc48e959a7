"""Retries need no new webhook: the background dispatcher and when it runs.

Inbox 0.2, finding 3: in 0.1 the background dispatcher started only when a
new delivery arrived in that process, so after a restart orphaned and failed
deliveries waited for the next sale.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import typing as t

import pytest
from flask import Flask

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb.dispatch.receivers import receiver_set
from flask_posweb.inbox import Inbox
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .conftest import KEY


def wait_for(condition: t.Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def serving_app(posweb: PosWeb, database_url: str, **config: t.Any) -> Flask:
    """An app as it runs in production (TESTING off), with a health check of its own."""
    app = Flask(__name__)
    app.config.update(
        POSWEB_API_KEYS=[KEY],
        POSWEB_DATABASE_URL=database_url,
        POSWEB_POLL_INTERVAL=0.05,
        **config,
    )
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    app.add_url_rule("/health", "health", lambda: "ok")
    app.test_client_class = PosWebClient
    return app


@pytest.fixture
def posweb() -> PosWeb:
    posweb = PosWeb()
    posweb.on("payment_created", name="ledger")(lambda sender, event, **extra: None)
    return posweb


def orphan(app: Flask, inbox: Inbox, body: bytes) -> int:
    """A delivery stored by a process that died before dispatching it."""
    expected = receiver_set(EVENTS["payment_created"].signal, app, "payment_created")
    resource = json.loads(body)["ID"]  # as the request would have found it
    return inbox.admit(
        "payment_created", body, {}, receivers=expected, resource=resource, owner="died", lease=0.2
    ).delivery.id


def test_after_a_restart_a_health_check_is_enough(posweb: PosWeb, tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    before = serving_app(posweb, url)
    inbox = get_state(before).require_inbox()
    bodies = [
        sample("payment_created").replace(b'"ID": "', f'"ID": "{n}'.encode()) for n in range(3)
    ]
    ids = [orphan(before, inbox, body) for body in bodies]
    get_state(before).close()  # the process "dies"
    restarted = serving_app(posweb, url)
    state = get_state(restarted)
    try:
        assert (
            state.require_dispatch().background is not None
            and not state.require_dispatch().background.running
        )
        time.sleep(0.3)  # the dead process's leases run out; still no thread, no traffic
        assert (
            state.require_dispatch().background is not None
            and not state.require_dispatch().background.running
        )
        assert restarted.test_client().get("/health").data == b"ok"  # the load balancer
        assert state.require_dispatch().background.running
        new = state.require_inbox()
        wait_for(lambda: all(new.get(i).status == "processed" for i in ids))  # type: ignore[union-attr]
    finally:
        state.close()


def test_no_thread_in_tests_or_in_cli_commands(posweb: PosWeb, tmp_path: pathlib.Path) -> None:
    testing = serving_app(posweb, f"sqlite:///{tmp_path / 'a.sqlite3'}", TESTING=True)
    assert get_state(testing).require_dispatch().background is None
    testing.test_client().get("/health")
    serving = serving_app(posweb, f"sqlite:///{tmp_path / 'b.sqlite3'}")
    try:
        result = serving.test_cli_runner().invoke(args=["posweb", "list"])
        assert result.exit_code == 0
        background = get_state(serving).require_dispatch().background
        assert background is not None and not background.running
    finally:
        get_state(serving).close()
        get_state(testing).close()


def test_no_thread_in_worker_mode(posweb: PosWeb, tmp_path: pathlib.Path) -> None:
    app = serving_app(posweb, f"sqlite:///{tmp_path / 'a.sqlite3'}", POSWEB_DISPATCH="worker")
    assert get_state(app).require_dispatch().background is None
    get_state(app).close()


def test_a_repeat_of_an_abandoned_delivery_is_taken_at_once(
    posweb: PosWeb, tmp_path: pathlib.Path
) -> None:
    """DealPOS's own retry of a body whose first request died mid-dispatch."""
    app = serving_app(posweb, f"sqlite:///{tmp_path / 'a.sqlite3'}", TESTING=True)
    inbox = get_state(app).require_inbox()
    body = sample("payment_created")
    delivery_id = orphan(app, inbox, body)
    time.sleep(0.3)  # its lease ran out
    response = PosWebClient(app).deliver("payment_created", body)
    assert response.headers["X-PosWeb-Delivery"] == str(delivery_id)
    delivery = inbox.get(delivery_id)
    assert delivery is not None and delivery.status == "processed" and delivery.attempts == 2
    get_state(app).close()


def test_a_forked_child_runs_its_own_dispatcher(posweb: PosWeb, tmp_path: pathlib.Path) -> None:
    """gunicorn --preload: the app is built in the master, then forked."""
    app = serving_app(posweb, f"sqlite:///{tmp_path / 'a.sqlite3'}")
    state = get_state(app)
    app.test_client().get("/health")
    assert (
        state.require_dispatch().background is not None
        and state.require_dispatch().background.running
    )
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread did not come along, a new one did
        try:
            running = state.require_dispatch().background.running
            os.write(
                write,
                b"1"
                if running and state.require_dispatch().background._pid == os.getpid()
                else b"0",
            )
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    state.close()
