"""Shared fixtures.

Store tests run on SQLite, and also on PostgreSQL when
``POSWEB_TEST_DATABASE_URL`` names a server (``.ci/run`` starts one).
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
import threading
import typing as t
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import ReceiverSet
from flask_posweb.inbox.migrations import VERSION_TABLE
from flask_posweb.inbox.tables import metadata
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

HERE = pathlib.Path(__file__).parent
PG_URL = os.environ.get("POSWEB_TEST_DATABASE_URL")
DATABASES = ["sqlite", *(["postgresql"] if PG_URL else [])]
#: A key long enough for the configuration's check (16 characters or more).
KEY = "test-key-0123456789"

MakeApp = Callable[..., Flask]


def payload_bytes(name: str) -> bytes:
    """The exact bytes of a payload in ``tests/payloads``."""
    return (HERE / "payloads" / f"{name}.json").read_bytes()


def reset_postgresql(url: str) -> None:
    """Drop the inbox's tables from the test server (they are created again on first use)."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table.name} CASCADE"))
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
    finally:
        engine.dispose()


def run_together(target: Callable[[], None], count: int) -> None:
    """Run ``target`` in ``count`` threads at once and wait for all of them."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Clock:
    """Time that tests move by hand, instead of sleeping."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def monotonic(self) -> float:
        """The same time as seconds, for what a monotonic clock measures (leases)."""
        return (self.now - dt.datetime(2026, 1, 1)).total_seconds()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that needs root or Graphviz says so, and fails (never skips) without it:
    ``.ci/run`` provides both."""
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.fail("needs root (it mounts filesystems or drives PostgreSQL), as .ci/run has")
    if item.get_closest_marker("graphviz") and shutil.which("dot") is None:
        pytest.fail("needs Graphviz's dot: apt-get install graphviz (.ci/run installs it)")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """The inbox database of a store test: SQLite, then PostgreSQL when available."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    assert PG_URL is not None
    reset_postgresql(PG_URL)
    return PG_URL


@pytest.fixture
def inbox(database_url: str, clock: Clock) -> Iterator[Inbox]:
    """An inbox on each database, with a clock the test moves."""
    store = Inbox.from_url(database_url, clock=clock)
    yield store
    store.close()


#: The receivers most store tests pretend the receiving app had.
LEDGER = ReceiverSet("payment_created", frozenset({"ledger"}))


@pytest.fixture
def posweb() -> PosWeb:
    """A fresh extension: its receivers reach only the apps of this test."""
    return PosWeb()


@pytest.fixture
def make_app(tmp_path: pathlib.Path, posweb: PosWeb) -> Iterator[MakeApp]:
    """Build apps with ``posweb`` registered; each is closed after the test.

    Each app gets its own inbox file unless ``POSWEB_DATABASE_URL`` is given.
    """
    apps: list[Flask] = []

    def make(**config: t.Any) -> Flask:
        app = Flask(__name__, instance_path=str(tmp_path / f"instance{len(apps)}"))
        app.config.update(
            TESTING=True,
            POSWEB_API_KEYS=[KEY],
            POSWEB_DATABASE_URL=f"sqlite:///{tmp_path / f'inbox{len(apps)}.sqlite3'}",
        )
        app.config.update(config)
        app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
        app.test_client_class = PosWebClient
        apps.append(app)
        return app

    yield make
    for app in apps:
        if "posweb" in app.extensions:
            get_state(app).close()


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> PosWebClient:
    return t.cast(PosWebClient, app.test_client())


@pytest.fixture(scope="session", autouse=True)
def _the_clone_stays_clean() -> Iterator[None]:
    """First hour, finding 4: 0.1's suite left an empty ``instance/`` and a stray
    ``file:`` tree in the clone. Nothing the tests do may write beside them."""
    root = HERE.parent

    def tops() -> set[str]:
        folders = [root, *(root / "examples").iterdir()]
        return {
            str(path.relative_to(root))
            for folder in folders
            for path in folder.iterdir()
            if path.name != "__pycache__"
        }

    before = tops()
    yield
    strays = tops() - before - {".hypothesis", ".mypy_cache", ".ruff_cache"}
    assert not strays, f"the test suite wrote {sorted(strays)} into the clone"
