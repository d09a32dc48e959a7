"""The docs tell the truth: the tables against the code they describe, the
README's programs run, its two commands are the Makefile's and CI's, and the
site builds with warnings as errors."""

from __future__ import annotations

import datetime as dt
import pathlib
import re
import shutil
import subprocess
import sys
import typing as t

import click
import pytest
from blinker import NamedSignal
from flask import Flask

from flask_posweb import EVENTS
from flask_posweb import ConfigurationError
from flask_posweb import PosWeb
from flask_posweb import signals
from flask_posweb.config import DEFAULTS
from flask_posweb.config import RETENTION_KEYS
from flask_posweb.config import read_settings
from flask_posweb.events import EventType
from flask_posweb.inbox import states
from flask_posweb.state import get_state

ROOT = pathlib.Path(__file__).parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
KEY = "docs-key-0123456789"


def page(name: str) -> str:
    return (DOCS / f"{name}.rst").read_text()


def section(text: str, title: str) -> str:
    """The body of the reST section titled ``title`` (up to the next title of any level)."""
    match = re.search(
        rf"^{re.escape(title)}\n[-=~]+\n(.*?)(?=^\S[^\n]*\n[-=~]{{3,}}\n|\Z)", text, re.M | re.S
    )
    assert match is not None, f"no section {title!r}"
    return match.group(1)


def list_table(text: str) -> list[list[str]]:
    """The rows of the first ``list-table`` in ``text``, header first; each cell
    is its lines joined by newlines, without the list markers' indentation."""
    body = text.split(".. list-table::", 1)[1]
    rows: list[list[str]] = []
    for line in body.splitlines()[1:]:
        if line.startswith("    *   - "):
            rows.append([line[len("    *   - ") :]])
        elif line.startswith("        - "):
            rows[-1].append(line[len("        - ") :])
        elif line.startswith("          ") and rows:
            rows[-1][-1] += "\n" + line.strip()
        elif line.strip() and not line.startswith("    :") and rows:
            break
    return rows


# -- the README ----------------------------------------------------------------------


def test_the_two_commands_are_the_makefile_and_ci() -> None:
    assert "make run " in README and "make test " in README
    makefile = (ROOT / "Makefile").read_text()
    assert "examples/shop/app.py run" in makefile and "-m pytest" in makefile
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")


def test_the_readme_gives_the_example_shops_key() -> None:
    shop = (ROOT / "examples" / "shop" / "app.py").read_text()
    key = re.search(r'"SHOP_API_KEY", "([^"]+)"', shop)
    assert key is not None
    assert f"`{key.group(1)}`" in README and "SHOP_API_KEY" in README


def readme_blocks() -> list[tuple[str, str, bool]]:
    """Every fenced block of the README: (language, code, run). A block is not
    run when the line before it is a ``<!-- not run: reason -->`` comment."""
    found = []
    for match in re.finditer(
        r"(?:^(<!-- not run:[^\n]*-->)\n)?^```(\w*)\n(.*?)^```$", README, re.M | re.S
    ):
        found.append((match.group(2), match.group(3), match.group(1) is None))
    return found


def test_every_python_block_of_the_readme_is_run_or_marked() -> None:
    python = [(code, run) for language, code, run in readme_blocks() if language == "python"]
    assert any(run for _, run in python), "the quickstart is a complete program"
    assert any(not run for _, run in python)
    # Every marker stands before a block, where the extraction above sees it.
    assert README.count("<!-- not run:") == sum(not run for _, run in python)


@pytest.mark.parametrize(
    "code",
    [code for language, code, run in readme_blocks() if language == "python" and run],
)
def test_the_readmes_programs_run(code: str, tmp_path: pathlib.Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(code)
    done = subprocess.run(
        [sys.executable, str(program)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_the_readmes_links_lead_somewhere() -> None:
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:rst|md))\)", README)
    assert "docs/configuration.rst" in links
    for link in links:
        assert (ROOT / link).is_file(), link


# -- configuration ---------------------------------------------------------------------


CONFIGURATION = page("configuration")
UNITS = {
    row[0].removeprefix(":data:`").removesuffix("`"): row[2]
    for row in list_table(section(CONFIGURATION, "Every key"))[1:]
}


def test_the_table_has_every_key_in_order_with_its_default() -> None:
    rows = list_table(section(CONFIGURATION, "Every key"))
    assert rows[0] == ["Key", "Default", "Unit"]
    assert [row[0] for row in rows[1:]] == [f":data:`{key}`" for key in DEFAULTS]
    assert [row[1] for row in rows[1:]] == [f"``{value!r}``" for value in DEFAULTS.values()]


def test_every_key_is_described_with_its_default() -> None:
    entries = re.findall(r"^\.\. data:: (POSWEB_\w+)\n(.*?)(?=^\S|\Z)", CONFIGURATION, re.M | re.S)
    assert [key for key, _ in entries] == list(DEFAULTS)
    for key, body in entries:
        assert f"Default: ``{DEFAULTS[key]!r}``" in body, key


def settings(**overrides: t.Any) -> t.Any:
    config = {
        **DEFAULTS,
        "POSWEB_API_KEYS": [KEY],
        "POSWEB_OAUTH_CLIENTS": {"dealpos": KEY},  # so that the token keys are read too
        "POSWEB_DASHBOARD": True,  # and the log page's
        "POSWEB_DASHBOARD_ACCESS": lambda: True,
        "SECRET_KEY": KEY,
        **overrides,
    }
    return read_settings(config, "/tmp/instance")


DURATIONS = [key for key, unit in UNITS.items() if unit == "duration"]
WITH_UNIT = [key for key, unit in UNITS.items() if unit == "duration with a unit"]
NUMBERS = [key for key, unit in UNITS.items() if unit in ("count", "bytes")]


def seconds_of(key: str, read: t.Any) -> float:
    """The value of a duration ``key`` in ``read`` settings, in seconds."""
    name = key.removeprefix("POSWEB_").lower()
    where = {
        "retention": ("retention", "processed"),
        "dead_retention": ("retention", "dead"),
        "rejected_max_age": ("retention", "rejected"),
        "loyalty_retention": ("retention", "answers"),
        "dashboard_search_range": ("dashboard", "search_range"),
    }.get(name, (name,))
    value = read
    for attribute in where:
        value = getattr(value, attribute)
    return float(value)


@pytest.mark.parametrize("key", DURATIONS + WITH_UNIT)
def test_documented_durations_take_a_timedelta_or_a_string(key: str) -> None:
    for value, seconds in (("90s", 90), ("1d12h", 129600), (dt.timedelta(minutes=10), 600)):
        assert seconds_of(key, settings(**{key: value})) == seconds
    with pytest.raises(ConfigurationError, match=key):
        settings(**{key: "ten minutes"})


@pytest.mark.parametrize("key", DURATIONS)
def test_documented_durations_take_seconds(key: str) -> None:
    """A number, or a string of one (as environment variables give): seconds."""
    for value in (90, 90.0, "90", " 90 "):
        assert seconds_of(key, settings(**{key: value})) == 90


@pytest.mark.parametrize("key", WITH_UNIT)
def test_retention_keys_refuse_a_bare_number(key: str) -> None:
    for value in (30, "30"):  # is it seconds or days?
        with pytest.raises(ConfigurationError, match="needs a unit"):
            settings(**{key: value})


def test_the_keys_documented_as_needing_a_unit_are_the_codes() -> None:
    assert sorted(WITH_UNIT) == sorted(RETENTION_KEYS)


@pytest.mark.parametrize("key", NUMBERS)
def test_counts_and_sizes_are_no_durations(key: str) -> None:
    with pytest.raises(ConfigurationError, match=key):
        settings(**{key: "2m"})


# -- events ------------------------------------------------------------------------------


EVENTS_PAGE = page("events")


def event_row(event: EventType) -> list[str]:
    """The documented row of an event, from the catalogue."""
    if event.wire_name is None:
        key = "—"
    else:
        certainty = event.wire_name_certainty
        note = f" ({certainty})" if certainty not in (None, "observed") else ""
        key = f"``{event.wire_name}``{note}"
    return [
        f"| ``{event.name}``\n| ``{event.url_rule}``",
        f"{event.group}: {key}",
        f"``{event.schema.__name__}``",
        "yes" if event.provisional else "—",
        f"``{event.resource_key}``" if event.resource_key else "—",
    ]


def test_the_events_table_is_the_catalogue() -> None:
    rows = list_table(section(EVENTS_PAGE, "Every event"))
    assert [row[0] for row in rows[1:]] == [event_row(e)[0] for e in EVENTS.values()]
    for row, event in zip(rows[1:], EVENTS.values(), strict=True):
        assert row == event_row(event)


def test_the_signal_of_an_event_has_its_name() -> None:
    """The table's first column stands for the signal too."""
    for name, event in EVENTS.items():
        assert event.signal is getattr(signals, name) and event.signal.name == name


def test_the_events_with_exact_marks_are_the_documented_ones() -> None:
    text = section(EVENTS_PAGE, "Required fields: presence marks")
    bullet = text.split("-   **Invoice Payment events**", 1)[1].split("\n-   ", 1)[0]
    documented = re.findall(r"``(\w+)``", bullet.split(")", 1)[0])
    exact = [e for e in EVENTS.values() if e.exact_marks]
    assert documented == [e.name for e in exact]
    assert {e.group for e in exact} == {"Invoice Payment"}
    assert [e.name for e in EVENTS.values() if e.group == "Invoice Payment"] == documented


# -- signals -------------------------------------------------------------------------------


SIGNALS_PAGE = page("signals")


def test_every_lifecycle_signal_is_documented_with_its_arguments() -> None:
    rows = list_table(section(SIGNALS_PAGE, "Lifecycle signals"))[1:]
    documented = {
        row[0].removeprefix(":data:`").removesuffix("`"): tuple(re.findall(r"``(\w+)``", row[1]))
        for row in rows
    }
    assert documented == signals.KEYWORDS
    assert [row[0] for row in rows] == [f":data:`{name}`" for name in signals.KEYWORDS]
    described = re.findall(r"^\.\. autodata:: (\w+)$", SIGNALS_PAGE, re.M)
    assert [name for name in described if name not in ("KEYWORDS", "EXTRA")] == list(
        signals.KEYWORDS
    )


def test_every_lifecycle_signal_is_in_keywords() -> None:
    lifecycle = {
        n for n, v in vars(signals).items() if isinstance(v, NamedSignal) and n not in EVENTS
    }
    assert lifecycle == set(signals.KEYWORDS)


# -- the command line --------------------------------------------------------------------


def commands(group: click.Group, path: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every command under ``group`` with its options' long names."""
    found: dict[str, list[str]] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(commands(command, (*path, name)))
        else:
            options = [
                opt
                for param in command.params
                if isinstance(param, click.Option)
                for opt in param.opts
                if opt.startswith("--")
            ]
            found[" ".join((*path, name))] = sorted(options)
    return found


def test_every_command_and_option_is_documented() -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, POSWEB_API_KEYS=[KEY])
    app.register_blueprint(PosWeb().blueprint, url_prefix="/dealpos")
    try:
        group = app.cli.commands["posweb"]
        assert isinstance(group, click.Group)
        expected = commands(group)
    finally:
        get_state(app).close()
    cli = page("cli")
    documented = {
        program: sorted(re.findall(r"^\.\. option:: (--[\w-]+)", body, re.M))
        for program, body in re.findall(
            r"^\.\. program:: flask posweb ([\w ]+)\n(.*?)(?=^\.\. program::|\Z)", cli, re.M | re.S
        )
    }
    assert documented == expected


# -- the site --------------------------------------------------------------------------------


@pytest.mark.graphviz
def test_the_docs_build_without_a_warning(tmp_path: pathlib.Path) -> None:
    """``sphinx-build -W``: a bad reference, a page outside the toctree, a
    docstring that renders badly all fail here. The state diagram is drawn by
    Graphviz from the code."""
    assert shutil.which("dot"), "the docs need Graphviz's 'dot': apt-get install graphviz"
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    inbox = (out / "inbox.html").read_text()
    svg = re.search(r'<object data="(_images/graphviz-[0-9a-f]+\.svg)"', inbox)
    assert svg is not None, "the state diagram is missing"
    drawing = (out / svg.group(1)).read_text()
    for edge in states.TRANSITIONS:
        assert f">{edge.target}</text>" in drawing and f">{edge.trigger}</text>" in drawing
    assert "Version 0.1.0" in (out / "changes.html").read_text()
