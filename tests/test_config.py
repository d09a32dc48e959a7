"""Checked configuration and isolated tests: "A newcomer's first hour", findings 1, 4 and 6.

Each test here failed on 0.1: a misspelt key was ignored, ``mysql://`` raised a
raw ``ModuleNotFoundError``, ``POSWEB_RETENTION = 30`` meant 30 seconds,
relative SQLite paths landed in the current directory, and a ``TESTING`` app
wrote into the developer's own inbox with a background thread running.
"""

from __future__ import annotations

import os
import pathlib
import typing as t
import warnings
import weakref

import pytest
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb import signals
from flask_posweb.events import EVENTS
from flask_posweb.exceptions import ConfigurationError
from flask_posweb.exceptions import PosWebWarning
from flask_posweb.inbox import Filter
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import Sent
from flask_posweb.testing import captured_signals
from flask_posweb.testing import drain

from .conftest import KEY

#: The extension of each app :func:`build` made.
EXTENSIONS: weakref.WeakKeyDictionary[Flask, PosWeb] = weakref.WeakKeyDictionary()


def build(tmp_path: pathlib.Path, **config: t.Any) -> Flask:
    """An app with its own instance folder and only the given configuration."""
    app = Flask("shop", instance_path=str(tmp_path / "instance"))
    app.config.update({"POSWEB_API_KEYS": [KEY], **config})
    app.test_client_class = PosWebClient
    EXTENSIONS[app] = PosWeb(app)
    return app


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty directory, to see what lands in the current directory."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def close(app: Flask) -> None:
    get_state(app).close()


# -- finding 4: configuration mistakes do not pass silently -----------------------------


def test_a_misspelt_key_warns_with_the_closest_known_key(tmp_path: pathlib.Path) -> None:
    with pytest.warns(
        PosWebWarning, match="'POSWEB_MAX_ATTEMPT'; did you mean 'POSWEB_MAX_ATTEMPTS'"
    ):
        app = build(tmp_path, TESTING=True, POSWEB_MAX_ATTEMPT=3)
    close(app)


def test_a_key_like_no_other_still_warns(tmp_path: pathlib.Path) -> None:
    with pytest.warns(PosWebWarning, match="Unknown setting 'POSWEB_ZZZ'$"):
        app = build(tmp_path, TESTING=True, POSWEB_ZZZ=1)
    close(app)


def test_the_singular_api_key_names_the_plural(tmp_path: pathlib.Path) -> None:
    with warnings.catch_warnings(), pytest.raises(ConfigurationError, match="POSWEB_API_KEYS"):
        warnings.simplefilter("ignore", PosWebWarning)
        build(tmp_path, TESTING=True, POSWEB_API_KEYS=[], POSWEB_API_KEY=KEY)


@pytest.mark.parametrize(
    "url", ["mysql://shop:secret@localhost/shop", "mssql+pyodbc://shop@dsn", "oracle://x@y/z"]
)
def test_an_unsupported_database_names_the_supported_ones(tmp_path: pathlib.Path, url: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        build(tmp_path, POSWEB_DATABASE_URL=url)
    message = str(error.value)
    assert "'sqlite:///path' or 'postgresql://" in message
    assert "secret" not in message  # a URL's password is never repeated


def test_a_missing_driver_names_the_extra_to_install(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy.dialects.postgresql.psycopg as dialect

    def no_driver(cls: type) -> t.NoReturn:
        raise ModuleNotFoundError("No module named 'psycopg'", name="psycopg")

    monkeypatch.setattr(dialect.PGDialect_psycopg, "import_dbapi", classmethod(no_driver))
    with pytest.raises(ConfigurationError, match=r"pip install 'Flask-PosWeb\[postgresql\]'"):
        build(tmp_path, POSWEB_DATABASE_URL="postgresql://shop:secret@localhost/shop")


def test_not_a_url_at_all(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match="not a database URL"):
        build(tmp_path, POSWEB_DATABASE_URL="inbox.sqlite3")


@pytest.mark.parametrize(
    ("key", "field"), [("POSWEB_RETENTION", "processed"), ("POSWEB_DEAD_RETENTION", "dead")]
)
def test_a_retention_needs_a_unit(tmp_path: pathlib.Path, key: str, field: str) -> None:
    """0.1 read ``POSWEB_RETENTION = 30`` as 30 seconds."""
    with pytest.raises(ConfigurationError, match=f"{key} needs a unit: .*'30d'"):
        build(tmp_path, TESTING=True, **{key: 30})
    app = build(tmp_path, TESTING=True, **{key: "30d"})
    assert getattr(get_state(app).settings.retention, field) == 30 * 86400
    close(app)


def test_a_bad_duration_says_which_forms_work(tmp_path: pathlib.Path) -> None:
    with pytest.raises(
        ConfigurationError, match="POSWEB_LEASE: 'a while' is not a duration like '90s'"
    ):
        build(tmp_path, TESTING=True, POSWEB_LEASE="a while")


def test_a_relative_sqlite_path_goes_to_the_instance_folder(tmp_path: pathlib.Path) -> None:
    app = build(tmp_path, POSWEB_DATABASE_URL="sqlite:///inbox.sqlite3")
    with app.test_request_context():
        app.test_client().deliver("payment_created")
    close(app)
    assert (tmp_path / "instance" / "inbox.sqlite3").is_file()
    assert not os.listdir(tmp_path / "cwd")


def test_an_sqlite_uri_goes_to_the_instance_folder_without_a_stray_tree(
    tmp_path: pathlib.Path,
) -> None:
    app = build(tmp_path, POSWEB_DATABASE_URL="sqlite:///file:inbox.sqlite3?uri=true")
    app.test_client().deliver("payment_created")
    close(app)
    assert (tmp_path / "instance" / "inbox.sqlite3").is_file()
    assert not os.listdir(tmp_path / "cwd")  # 0.1 made ./file:/... here


def test_an_absolute_sqlite_uri_is_kept_as_given(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "elsewhere.sqlite3"
    app = build(tmp_path, POSWEB_DATABASE_URL=f"sqlite:///file:{path}?uri=true")
    app.test_client().deliver("payment_created")
    close(app)
    assert path.is_file()
    assert not os.listdir(tmp_path / "cwd")


def test_the_default_inbox_is_in_the_instance_folder(tmp_path: pathlib.Path) -> None:
    app = build(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert app.test_client().deliver("payment_created").status_code == 200
    close(app)
    assert (tmp_path / "instance" / "posweb.sqlite3").is_file()


# -- finding 1: tests are isolated by default -------------------------------------------


def test_a_testing_app_has_a_private_inbox(tmp_path: pathlib.Path) -> None:
    """0.1's README pattern failed on its second run: the sample was a duplicate."""
    first, second = build(tmp_path, TESTING=True), build(tmp_path, TESTING=True)
    for app in (first, second):
        assert app.test_client().deliver("payment_created").json == {"status": "success"}
        with app.app_context():
            assert sum(get_state(app).require_inbox().counts().values()) == 1
    close(first)
    close(second)
    assert not (tmp_path / "instance").exists()  # nothing in the developer's instance folder
    assert not os.listdir(tmp_path / "cwd")


def test_the_private_inbox_is_gone_when_the_app_is_closed(tmp_path: pathlib.Path) -> None:
    app = build(tmp_path, TESTING=True)
    app.test_client().deliver("payment_created")
    path = get_state(app).require_inbox().database.engines.durable.url.database
    assert path and os.path.exists(path)
    close(app)
    assert not os.path.exists(path)


def test_an_explicit_url_is_honoured_when_testing(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'mine.sqlite3'}"
    app = build(tmp_path, TESTING=True, POSWEB_DATABASE_URL=url)
    app.test_client().deliver("payment_created")
    close(app)
    again = build(tmp_path, TESTING=True, POSWEB_DATABASE_URL=url)
    with again.app_context():
        assert sum(get_state(again).require_inbox().counts().values()) == 1
    close(again)


@pytest.mark.parametrize("dispatch", ["inline", "thread"])
def test_no_background_thread_runs_when_testing(tmp_path: pathlib.Path, dispatch: str) -> None:
    app = build(tmp_path, TESTING=True, POSWEB_DISPATCH=dispatch)
    app.test_client().deliver("payment_created")
    assert get_state(app).require_dispatch().background is None
    close(app)
    app = build(tmp_path / "live", POSWEB_DISPATCH=dispatch)
    assert get_state(app).require_dispatch().background is not None
    close(app)


def test_a_zero_backoff_is_for_tests_only(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match="POSWEB_RETRY_BACKOFF must be a positive"):
        build(tmp_path, POSWEB_RETRY_BACKOFF=0)
    app = build(tmp_path, TESTING=True, POSWEB_RETRY_BACKOFF=0)
    assert get_state(app).settings.retry_backoff == 0
    close(app)


def test_drain_runs_a_failed_delivery_now(tmp_path: pathlib.Path) -> None:
    """0.1's drain skipped a failed delivery until its backoff: retries were untestable."""
    app = build(tmp_path, TESTING=True, POSWEB_DISPATCH="worker")
    posweb = EXTENSIONS[app]
    calls: list[str] = []

    @posweb.on("payment_created")
    def flaky(sender: Flask, event: t.Any, **extra: t.Any) -> None:
        calls.append(event.name)
        if len(calls) == 1:
            raise RuntimeError("the ledger is down")

    app.test_client().deliver("payment_created")
    assert drain(app) == 1
    inbox = get_state(app).require_inbox()
    assert inbox.counts()["failed"] == 1
    assert drain(app, failed=False) == 0  # its backoff (one minute) is not over
    assert drain(app) == 1
    assert inbox.counts()["processed"] == 1
    assert len(calls) == 2
    assert [d.status for d in inbox.deliveries(Filter())] == ["processed"]
    close(app)


# -- finding 6: names and surfaces ------------------------------------------------------


def test_signal_names_are_event_names() -> None:
    for name, event in EVENTS.items():
        assert event.signal.name == name
        assert getattr(signals, name) is event.signal


def test_captured_signals_yields_named_tuples(tmp_path: pathlib.Path) -> None:
    app = build(tmp_path, TESTING=True)
    with captured_signals(app, signals.payment_created, signals.webhook_received) as sent:
        app.test_client().deliver("payment_created")
    assert [s.name for s in sent] == ["webhook_received", "payment_created"]
    assert all(isinstance(s, Sent) for s in sent)
    assert sent[1].kwargs["event"].name == "payment_created"
    close(app)


def test_the_public_read_api_reads_the_inbox(tmp_path: pathlib.Path) -> None:
    app = build(tmp_path, TESTING=True)
    posweb = EXTENSIONS[app]
    delivery_id = app.test_client().deliver("payment_created").headers.get("X-PosWeb-Delivery")
    with app.app_context():
        assert sum(posweb.inbox.counts().values()) == 1
        (listed,) = posweb.inbox.deliveries(Filter(event="payment_created"))
        assert posweb.inbox.get(listed.id) == listed
        if delivery_id is not None:
            assert str(listed.id) == delivery_id
    close(app)
