"""The README tells the truth: every setting, every signal, the two commands."""

from __future__ import annotations

import pathlib
import re

from blinker import NamedSignal

from flask_posweb import signals
from flask_posweb.config import DEFAULTS
from flask_posweb.events import EVENTS

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def first_cells(heading: str) -> list[str]:
    """The first cell of each row of the tables in the section ``## heading``."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)


def test_every_setting_is_documented_once() -> None:
    assert first_cells("Configuration") == list(DEFAULTS)


def test_every_lifecycle_signal_is_documented() -> None:
    lifecycle = [
        n for n, v in vars(signals).items() if isinstance(v, NamedSignal) and n not in EVENTS
    ]
    assert sorted(first_cells("Signals")) == sorted(lifecycle)


def test_the_two_commands_are_the_makefile_and_ci() -> None:
    assert "make run" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert "examples/shop/app.py run" in makefile and "-m pytest" in makefile
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")
