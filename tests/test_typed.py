"""Typed payloads and the pytest plugin: mypy --strict sees what receivers get, and the
README's testing example runs (and type-checks) as a user's test would."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import re
import subprocess
import sys
import typing as t
from decimal import Decimal

import pytest
from flask import Flask

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb import typed
from flask_posweb.sending import sample
from flask_posweb.typedicts import render
from flask_posweb.typedicts import type_name

ROOT = pathlib.Path(__file__).parent.parent
pytest_plugins = ["pytester"]


def test_the_typed_module_is_what_the_catalogue_says() -> None:
    """Regenerate with: python -m flask_posweb.typedicts > flask_posweb/typed.py"""
    assert (ROOT / "flask_posweb" / "typed.py").read_text() == render()


def _conforms(value: t.Any, hint: t.Any) -> bool:
    """Whether a loaded value fits a type hint of :mod:`flask_posweb.typed`."""
    origin, args = t.get_origin(hint), t.get_args(hint)
    if hint is t.Any:
        return True
    if origin in (t.Union, __import__("types").UnionType):
        return any(_conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, dict):  # a TypedDict
        return isinstance(value, dict) and _fits(value, hint)
    if hint is dt.date:
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    return isinstance(value, hint)


def _fits(data: dict[str, t.Any], typed_dict: type) -> bool:
    hints = t.get_type_hints(typed_dict, vars(typed))
    required = t.cast(t.Any, typed_dict).__required_keys__
    if not required <= data.keys():
        return False
    return all(_conforms(data[key], hint) for key, hint in hints.items() if key in data)


@pytest.mark.parametrize("name", list(EVENTS))
def test_what_receivers_get_fits_its_typed_payload(name: str) -> None:
    payload = getattr(typed, type_name(name))
    data = EVENTS[name].load(json.loads(sample(name))).data
    if payload == dict[str, t.Any]:  # an unpublished body: any object
        assert isinstance(data, dict)
        return
    assert _fits(data, payload), name
    if name.startswith("payment_"):
        assert isinstance(data["Amount"], Decimal)


def test_presence_is_required_only_where_it_is_enforced() -> None:
    assert typed.PaymentCreated.__required_keys__ >= {"ID", "Amount", "InvoiceID"}
    assert "CreatorID" in typed.PaymentCreated.__optional_keys__
    # Customer Created marks 13 fields required, but DealPOS omits them: not enforced.
    assert typed.CustomerCreated.__required_keys__ == frozenset()


def mypy(tmp_path: pathlib.Path, source: str) -> str:
    (tmp_path / "check.py").write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
        # As for an installed package: only the user's file is checked, not ours.
        + ["--follow-imports=silent", str(tmp_path / "check.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        # An editable install is an import hook mypy cannot follow: point at the tree.
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    return done.stdout


def test_mypy_sees_the_types_of_a_receivers_event(tmp_path: pathlib.Path) -> None:
    out = mypy(
        tmp_path,
        "from __future__ import annotations\n"
        "import typing as t\n"
        "from flask import Flask\n"
        "from flask_posweb import PosWeb, WebhookEvent\n"
        "from flask_posweb.typed import PaymentCreated\n"
        "posweb = PosWeb()\n"
        "@posweb.on('payment_created')\n"
        "def ledger(sender: Flask, event: WebhookEvent[PaymentCreated], **extra: t.Any) -> None:\n"
        "    reveal_type(event.data['Amount'])\n"
        "    reveal_type(event.data.get('CreatorID'))\n"
        "    event.data['Amout']\n"
        "def untyped(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:\n"
        "    reveal_type(event.data)\n",
    )
    assert 'Revealed type is "decimal.Decimal"' in out
    assert re.search(r'Revealed type is "(builtins\.)?str \| None"', out)
    assert 'TypedDict "PaymentCreated" has no key "Amout"' in out
    assert re.search(r'Revealed type is "(builtins\.)?dict\[(builtins\.)?str, Any\]"', out)
    assert out.count(": error:") == 1  # only the misspelt key


def test_a_receiver_that_cannot_take_the_event_is_refused_at_decoration() -> None:
    posweb = PosWeb()
    with pytest.raises(TypeError, match="def lonely\\(sender, event, \\*\\*extra\\)"):

        @posweb.on("payment_created")
        def lonely(event: t.Any) -> None: ...

    with pytest.raises(TypeError, match="event_name, error, delivery_id"):

        @posweb.on("webhook_rejected")
        def rejected(sender: Flask, event: t.Any) -> None: ...

    @posweb.on("webhook_rejected")
    def fine(sender: Flask, **extra: t.Any) -> None: ...


# -- the pytest plugin -------------------------------------------------------------------


def readme_test_example() -> str:
    """The README's testing example (the block the README says the plugin's tests run)."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- not run: the pytest plugin's own tests run this example -->\n```python\n(.*?)```",
        readme,
        re.DOTALL,
    )
    assert match, "the README's testing example is gone"
    return match.group(1)


CONFTEST = """
from __future__ import annotations

import pytest
from flask import Flask

from flask_posweb import PosWeb


@pytest.fixture
def app() -> Flask:
    app = Flask("shop")
    app.config.update(TESTING=True, POSWEB_API_KEYS=["a-long-random-key-for-tests"])
    posweb = PosWeb()
    posweb.on("payment_written_off")(lambda sender, event, **extra: None)
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    return app
"""


def test_the_readme_testing_example_passes_twice_in_a_row(pytester: pytest.Pytester) -> None:
    """Inbox 0.2 / first hour, finding 1: 0.1's README pattern failed on its second
    run (the default inbox was the developer's own file, so the sample was a duplicate)."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_shop=readme_test_example())
    for _ in range(2):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
    assert not (pytester.path / "instance").exists()  # nothing written beside the tests


def test_the_readme_testing_example_passes_mypy_strict(tmp_path: pathlib.Path) -> None:
    out = mypy(tmp_path, readme_test_example())
    assert out.strip().startswith("Success"), out


def test_the_fixtures_are_the_plugins(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        from flask_posweb.testing import PosWebClient

        def test_fixtures(posweb_client, posweb_events):
            assert isinstance(posweb_client, PosWebClient)
            assert posweb_events == []
            posweb_client.deliver("payment_written_off")
            posweb_client.deliver("payment_written_off")  # a duplicate: not dispatched
            assert [e.name for e in posweb_events] == ["payment_written_off"]
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
