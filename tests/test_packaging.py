"""The package as a user gets it: "A newcomer's first hour", finding 6 and "Packaging".

The sdist is built, the wheel is built *from the sdist* (as pip does from an
index, so a file missing from either fails here), and the wheel is installed
into a clean virtual environment; a smoke test then runs from outside the
source tree, where nothing of the clone can stand in for what the wheel lacks.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).parent.parent

SMOKE_APP = """
from flask import Flask
from flask_posweb import PosWeb

app = Flask("smoke", instance_path=__import__("os").path.abspath("instance"))
app.config.update(POSWEB_API_KEYS=["a-long-random-key-for-smoke"])
posweb = PosWeb(app)
posweb.loyalty.member_points(lambda call: 0)  # its URL is listed only with a provider
"""

SMOKE = """
import importlib.metadata
import importlib.resources
import json
import pathlib
import sqlite3
import sys

import flask_posweb
from flask_posweb import typed
from flask_posweb.sending import sample
from flask_posweb.testing import PosWebClient

site = pathlib.Path(flask_posweb.__file__).parent
assert str(site).startswith(sys.prefix), site  # the wheel's copy, not the clone's
files = importlib.resources.files("flask_posweb")
assert files.joinpath("py.typed").is_file()
assert files.joinpath("dashboard/templates/posweb_dashboard/list.html").is_file()
assert typed.PaymentCreated.__required_keys__ >= {"Amount"}
assert json.loads(sample("payment_written_off"))["TagID"]
plugins = importlib.metadata.entry_points(group="pytest11")
assert any(p.value == "flask_posweb.pytest_plugin" for p in plugins)

from smoke_app import app

app.test_client_class = PosWebClient
client = app.test_client()
assert client.deliver("payment_created").status_code == 200
app.extensions["posweb"].close()
tables = {name for (name,) in sqlite3.connect("instance/posweb.sqlite3").execute(
    "SELECT name FROM sqlite_master WHERE type = 'table'")}
assert {"posweb_deliveries", "posweb_alembic_version"} <= tables, tables
print("smoke: ok")
"""


def run(*args: str | os.PathLike[str], cwd: pathlib.Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.mark.slow
def test_the_wheel_installs_and_works_outside_the_tree(tmp_path: pathlib.Path) -> None:
    dist = tmp_path / "dist"
    output = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT, cwd=ROOT)
    # 0.1 printed "Package 'flask_posweb.samples' is absent from the `packages` configuration".
    assert not re.findall(r".*warn.*", output, re.IGNORECASE)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert sdist.stat().st_size > 0

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        wheel,
        cwd=tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "smoke_app.py").write_text(textwrap.dedent(SMOKE_APP))
    (elsewhere / "smoke.py").write_text(textwrap.dedent(SMOKE))
    assert "smoke: ok" in run(python, "smoke.py", cwd=elsewhere)

    events = run(
        venv / "bin" / "flask", "--app", "smoke_app", "posweb", "events", "--base-url",
        "https://shop.example", cwd=elsewhere,
    )  # fmt: skip
    assert "https://shop.example/dealpos/payment-written-off" in events
    assert "https://shop.example/dealpos/loyalty/member-points" in events
    current = run(
        venv / "bin" / "flask", "--app", "smoke_app", "posweb", "db", "current", cwd=elsewhere
    )
    assert "up to date" in current


# -- dependencies: "Pallets-grade details" ----------------------------------------------


def _normal(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    """The distributions ``pyproject.toml`` declares: ``"core"`` and each extra's."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {_normal(re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0]) for r in requirements}

    found = {"core": names(project["dependencies"])}
    found.update({extra: names(r) for extra, r in project["optional-dependencies"].items()})
    return found


def test_every_package_the_code_imports_is_declared() -> None:
    """Each distribution imported directly is a dependency or in an extra (werkzeug,
    click and itsdangerous through Flask were not)."""
    import importlib.metadata

    import grimp

    graph = grimp.build_graph("flask_posweb", include_external_packages=True, cache_dir=None)
    distributions = importlib.metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names) | {"_typeshed"}  # the type checker's own
    # A namespace package (opentelemetry) is several distributions: one declared will do.
    imported = {
        module: {_normal(name) for name in distributions[module]}
        for module in graph.modules
        if "." not in module and module != "flask_posweb" and module not in stdlib
    }
    declared = set().union(*_declared().values())
    assert {module for module, names in imported.items() if not names & declared} == set()


def test_the_drivers_and_brokers_are_the_hosts_to_choose() -> None:
    """Plain ``psycopg`` and ``celery`` in the extras: ``[binary]`` or ``[redis]``
    is the host's call."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    extras = re.search(r"\[project\.optional-dependencies\](.*?)\n\[", pyproject, re.S)
    assert extras is not None
    postgresql = re.search(r"^postgresql = \[(.*)\]$", extras.group(1), re.M)
    celery = re.search(r"^celery = \[(.*)\]$", extras.group(1), re.M)
    assert postgresql is not None and celery is not None
    assert postgresql.group(1) == '"psycopg>=3.1"' and celery.group(1) == '"celery>=5.3"'


def test_an_app_without_an_inbox_loads_neither_sqlalchemy_nor_alembic(
    tmp_path: pathlib.Path,
) -> None:
    script = textwrap.dedent(
        """
        import sys
        from flask import Flask
        from flask_posweb import PosWeb

        app = Flask("light", instance_path=sys.argv[1])
        app.config.update(POSWEB_API_KEYS=["a-long-random-key-0123"], POSWEB_INBOX=False)
        posweb = PosWeb(app)
        posweb.on("payment_created")(lambda sender, event, **extra: None)
        with open(sys.argv[2], "rb") as sample:
            response = app.test_client().post(
                "/dealpos/payment-created", data=sample.read(),
                headers={"X-API-Key": "a-long-random-key-0123", "Content-Type": "application/json"},
            )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert app.test_cli_runner().invoke(args=["posweb", "events"]).exit_code == 0
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic"))
        print(heavy)
        """
    )
    sample = ROOT / "flask_posweb" / "samples" / "payment_created.json"
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "instance"), str(sample)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
