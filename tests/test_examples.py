"""The example shop receives every event and answers every loyalty call, and runs
as its README says in Celery mode."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from types import ModuleType

import pytest
from flask import Flask

from flask_posweb import EVENTS
from flask_posweb.inbox import Inbox
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .servers import Env
from .servers import Redis
from .servers import children
from .servers import free_port
from .servers import get
from .servers import output_of
from .servers import spawn
from .servers import stop
from .servers import wait_for

ROOT = pathlib.Path(__file__).parent.parent
#: The console scripts the README's commands run (celery, gunicorn, flask).
BIN = pathlib.Path(sys.executable).parent


def load_example(name: str) -> ModuleType:
    folder = ROOT / "examples" / name
    # As `flask --app examples/<name>/app.py` does: its sibling modules import.
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"example_{name}", folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # As an import would: Flask finds the app's folder (and instance folder)
    # through sys.modules, or else takes the current directory, the clone.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shop_module() -> ModuleType:
    return load_example("shop")


@pytest.fixture
def shop(shop_module: ModuleType, tmp_path: pathlib.Path) -> Iterator[Flask]:
    app: Flask = shop_module.create_app(
        {
            "TESTING": True,
            "POSWEB_DATABASE_URL": f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
            "SHOP_DATABASE": str(tmp_path / "shop.sqlite3"),
        }
    )
    app.test_client_class = PosWebClient
    yield app
    get_state(app).close()


def test_the_shop_records_every_event(shop: Flask) -> None:
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    for name in EVENTS:
        assert client.deliver(name).status_code == 200, name
    page = client.get("/")
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    shown = re.findall(
        r"<tr><td>(\d+)</td><td>(\w+)</td><td>([^<]*)</td><td>([^<]*)</td>\s*<td>", html
    )
    assert sorted(event for _, event, _, _ in shown) == sorted(EVENTS)
    assert {whose for _, _, _, whose in shown} == {"the shop&#39;s own"}  # its own key
    assert f'<span id="count-processed">{len(EVENTS)}</span>' in html
    payment = next(summary for _, event, summary, _ in shown if event == "payment_created")
    assert payment == "KMG-PAY-2026-00388, Kemang, amount 75240"
    assert '<a href="/dealpos/log/">the delivery log page</a>' in html


def test_the_log_page_admits_only_this_machine_in_debug_mode(shop: Flask) -> None:
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    shop.config["DEBUG"] = False  # a copy of the shop in production: no one
    assert client.get("/dealpos/log/").status_code == 403
    shop.config["DEBUG"] = True
    assert client.get("/dealpos/log/").status_code == 200  # the test client is 127.0.0.1
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/dealpos/log/", environ_base=elsewhere).status_code == 403


@pytest.mark.parametrize(
    ("base_url", "admitted"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://localhost:5000", True),
        ("http://LOCALHOST", True),
        ("http://[::1]:5000", True),
        # DNS rebinding: another site's name, resolved to 127.0.0.1, from this machine.
        ("http://rebind.example:5000", False),
        ("http://127.0.0.1.rebind.example:5000", False),
        ("http://localhost.rebind.example", False),
        ("http://0.0.0.0:5000", False),
    ],
)
def test_the_log_page_admits_only_this_machines_own_names(
    shop: Flask, base_url: str, admitted: bool
) -> None:
    """Hostile bytes round two, finding 6: any Host from 127.0.0.1 was admitted,
    so a page on another site could read bodies and tracebacks by DNS rebinding."""
    shop.config["DEBUG"] = True
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    response = client.get("/dealpos/log/", base_url=base_url)  # from 127.0.0.1
    assert response.status_code == (200 if admitted else 403)


def test_the_shop_ledger_fails_when_asked_until_a_replay(shop: Flask) -> None:
    shop.config["DEBUG"] = True
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    # The file the shop's docstring sends.
    body = (ROOT / "examples" / "shop" / "failing_payment.json").read_bytes()
    delivery_id = client.deliver("payment_created", body).headers["X-PosWeb-Delivery"]
    page = client.get(f"/dealpos/log/{delivery_id}").get_data(as_text=True)
    assert "LedgerUnavailable: The ledger refused payment_created" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    replayed = client.post(
        f"/dealpos/log/{delivery_id}/replay",
        data={"csrf_token": token.group(1)},
        follow_redirects=True,
    )
    assert "the delivery is now processed" in replayed.get_data(as_text=True)
    always = {**json.loads(body), "ID": "p-always", "ShopFail": "always"}
    again = client.deliver("payment_created", always).headers["X-PosWeb-Delivery"]
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', client.get(f"/dealpos/log/{again}").get_data(True)
    )
    assert token is not None
    response = client.post(
        f"/dealpos/log/{again}/replay", data={"csrf_token": token.group(1)}, follow_redirects=True
    )
    assert "the delivery is now failed" in response.get_data(as_text=True)


def test_the_shop_answers_every_loyalty_call(shop: Flask) -> None:
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    assert client.call_loyalty("member_points").json == {"Point": 1208}
    assert client.call_loyalty("order_complete").json == {"reward": 68}
    assert client.call_loyalty("order_complete").json == {"reward": 68}  # once per order
    assert client.call_loyalty("member_points").json == {"Point": 1276}
    assert client.call_loyalty("validate_coupon").status_code == 200
    used = client.call_loyalty("validate_coupon", {"Key": "SORRY25K", "Outlet": "Kemang"})
    assert used.status_code == 400 and used.json["status"] == "used"
    unknown = client.call_loyalty("validate_coupon", {"Key": "NOPE"})
    assert unknown.status_code == 400 and unknown.json["status"] == "invalid"


@pytest.mark.slow
def test_the_shop_onboards_rotates_and_revokes_merchants_without_a_restart(
    shop: Flask,
) -> None:
    """Many merchants: keys in the shop's own table (digests only), looked up per
    request; a revoked key is refused once the lookup's cache lets go."""
    runner = shop.test_cli_runner()
    onboarded = runner.invoke(args=["shop", "add-merchant", "acme"])
    assert onboarded.exit_code == 0, onboarded.output
    key = onboarded.stdout.strip()
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    assert client.deliver("payment_created", key=key).status_code == 200
    delivery = get_state(shop).require_inbox().deliveries()[0]
    assert delivery.merchant == "acme"
    page = client.get("/").get_data(as_text=True)
    assert re.search(r"<td>payment_created</td><td>[^<]*</td><td>acme</td>", page)
    second = runner.invoke(args=["shop", "add-key", "acme"]).stdout.strip()
    assert runner.invoke(args=["shop", "revoke-key", "acme", "1"]).exit_code == 0
    get_state(shop).authenticator.lookup.clear()  # type: ignore[union-attr]  # the TTL passed
    assert client.deliver("invoice_created", key=key).status_code == 401
    assert client.deliver("invoice_created", key=second).status_code == 200
    listed = runner.invoke(args=["shop", "merchants"]).stdout
    assert "acme  key 1  revoked" in listed and "acme  key 2  live" in listed
    assert key not in (pathlib.Path(shop.config["SHOP_DATABASE"]).read_bytes().decode("latin-1"))


def test_the_shop_runs_in_celery_mode(tmp_path: pathlib.Path) -> None:
    """The README's commands, from a copy of the shop's folder: Redis, ``celery -A
    make_celery worker`` (prefork, one pool process), gunicorn and ``flask posweb
    send``. The delivery is processed by the Celery worker's pool process, and
    no receiver runs in the web processes."""
    shop = tmp_path / "shop"
    shutil.copytree(
        ROOT / "examples" / "shop", shop, ignore=shutil.ignore_patterns("instance", "__pycache__")
    )
    redis = Redis(tmp_path)
    redis.start()
    # FAULT_INSTANCE: where spawn() writes the servers' output (beside the instance).
    env = Env(os.environ, SHOP_CELERY_BROKER=redis.url, FAULT_INSTANCE=str(shop / "instance"))
    port = free_port()
    worker = spawn(
        env,
        "celery",
        BIN / "celery", "-A", "make_celery", "worker", "--pool", "prefork",
        "--concurrency", "1", "--loglevel", "INFO",
        cwd=shop,
    )  # fmt: skip
    web = spawn(
        env, "gunicorn", BIN / "gunicorn", "-w", "2", "-k", "gthread", "--threads", "8",
        "-b", f"127.0.0.1:{port}", "app:create_app()", cwd=shop,
    )  # fmt: skip
    try:
        wait_for(lambda: len(children(worker.pid)) == 1, 60, "the celery worker's pool")
        wait_for(lambda: get(port, "/") == 200, 60, "gunicorn")
        sent = subprocess.run(
            [BIN / "flask", "--app", "app.py", "posweb", "send", "payment_created",
             "--url", f"http://127.0.0.1:{port}"],
            cwd=shop, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sent.returncode == 0 and sent.stdout.startswith("200 OK"), sent.stdout + sent.stderr
        inbox = Inbox.from_url(f"sqlite:///{shop / 'instance' / 'posweb.sqlite3'}")
        try:
            (delivery,) = inbox.deliveries()
            processed = lambda: getattr(inbox.get(delivery.id), "status", None) == "processed"  # noqa: E731
            wait_for(processed, 120, "the Celery worker to process the delivery")
        finally:
            inbox.close()
        line = f"payment_created #{delivery.id}: KMG-PAY-2026-00388, Kemang, amount 75240"
        wait_for(lambda: line in output_of(worker), 30, "the receiver's log line")
        ran = [entry for entry in output_of(worker).splitlines() if line in entry]
        assert len(ran) == 1 and "/ForkPoolWorker-" in ran[0], ran  # in the pool process
        assert "flask_posweb.dispatch[" in output_of(worker)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            html = answer.read().decode()
        assert f"<tr><td>{delivery.id}</td><td>payment_created</td>" in html  # the shop's page
    finally:
        for process in (web, worker):
            stop(process)
        redis.stop()
    assert "payment_created #" not in output_of(web)  # no receiver ran in the web processes
