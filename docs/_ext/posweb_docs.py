"""Sphinx directives that draw the docs from the code, at build time, so they cannot drift.

``.. posweb-state-diagram::``
    The delivery state machine, from :data:`flask_posweb.inbox.states.TRANSITIONS`,
    rendered by ``sphinx.ext.graphviz`` (SVG, no JavaScript).

``.. posweb-transitions::``
    The same transitions as a table: from, what moves it, to.

``.. posweb-layers::``
    The package's layers, from the import-linter contract in ``pyproject.toml``
    (the one ``tests/test_layers.py`` checks), drawn by ``sphinx.ext.graphviz``.

``.. posweb-docstring:: dotted.module.name``
    A module's docstring, parsed in place without its summary line (the page
    introduces it) and its ``versionadded`` note: the rule or diagram the
    module states, in the module's own words.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import typing as t

import tomllib
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.ext.graphviz import graphviz
from sphinx.util.docutils import SphinxDirective

from flask_posweb.inbox import states

PYPROJECT = pathlib.Path(__file__).parent.parent.parent / "pyproject.toml"

#: How each kind of trigger is drawn: what moves a delivery, and who.
KINDS = {
    "store": ("solid", "#1f6f43", "green: a request stored a valid body", "a request"),
    "refuse": ("solid", "#9b2226", "red: a request's body was refused", "a request"),
    "dispatch": ("solid", "#222222", "black: the outcome of a dispatch", "a dispatcher"),
    "strand": (
        "solid",
        "#b8860b",
        "amber: no live dispatcher has its receivers, or one has again",
        "a dispatcher's housekeeping",
    ),
    "replay": ("dashed", "#005f99", "dashed blue: an operator's replay", "an operator"),
    "repeat": ("dotted", "#7a4fa0", "dotted purple: DealPOS sent the body again", "DealPOS"),
}


def kind(trigger: str) -> str:
    """``dispatch`` for every outcome of a dispatch, ``strand`` for stranding and
    reviving, else the trigger itself."""
    if trigger in states.DISPATCH_OUTCOMES:
        return "dispatch"
    return "strand" if trigger == "revive" else trigger


def dot() -> str:
    """The state machine in Graphviz's language."""
    lines = [
        "digraph deliveries {",
        '  graph [rankdir=LR, nodesep=0.35, ranksep=0.9, newrank=true, bgcolor="transparent"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#f5f5f5", '
        'fontname="Helvetica", fontsize=12];',
        '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];',
        '  start [shape=point, width=0.15, label="", fillcolor=black];',
    ]
    for status in states.STATUSES:
        # Terminal statuses: nothing moves them but an operator's replay.
        extra = ', peripheries=2, fillcolor="#e8eef6"' if status in states.TERMINAL else ""
        lines.append(f'  "{status}" [label="{status}"{extra}];')
    for edge in states.TRANSITIONS:
        source = "start" if edge.source is None else edge.source
        style, color, _, _ = KINDS[kind(edge.trigger)]
        lines.append(
            f'  "{source}" -> "{edge.target}" [label="{edge.trigger}", style={style}, '
            f'color="{color}", fontcolor="{color}"];'
        )
    lines.append("}")
    return "\n".join(lines)


class StateDiagram(SphinxDirective):
    """``.. posweb-state-diagram::``: the state machine as an SVG."""

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(states.__file__)
        node = graphviz()
        node["code"] = dot()
        node["options"] = {"docname": self.env.docname}
        node["alt"] = "The states of a delivery and every transition between them."
        node["classes"] = ["posweb-states"]
        legend = nodes.paragraph(classes=["posweb-legend"])
        kinds = sorted({kind(edge.trigger) for edge in states.TRANSITIONS}, key=list(KINDS).index)
        legend += nodes.Text(
            "Arrows: " + "; ".join(KINDS[name][2] for name in kinds) + ". "
            "A double border marks a final status; the dot is a new request."
        )
        return [node, legend]


class Transitions(SphinxDirective):
    """``.. posweb-transitions::``: every transition as a table row."""

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(states.__file__)
        header = ["From", "What moves it", "Who", "To"]
        rows = []
        for edge in states.TRANSITIONS:
            source = "(new)" if edge.source is None else edge.source
            who = KINDS[kind(edge.trigger)][3]
            rows.append([source, edge.trigger, who, edge.target])
        return [table(header, rows, widths=[18, 42, 22, 18], literal=(0, 3))]


def table(
    header: list[str], rows: list[list[str]], widths: list[int], literal: tuple[int, ...]
) -> nodes.table:
    """A docutils table; the cells of the ``literal`` columns are code."""
    group = nodes.tgroup(cols=len(widths))
    group += [nodes.colspec(colwidth=width) for width in widths]
    head, body = nodes.thead(), nodes.tbody()
    for index, cells in enumerate([header, *rows]):
        row = nodes.row()
        for column, text in enumerate(cells):
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            code = index > 0 and column in literal
            paragraph += nodes.literal(text, text) if code else nodes.Text(text)
            entry += paragraph
            row += entry
        (head if index == 0 else body).append(row)
    group += head
    group += body
    result = nodes.table(classes=["posweb-generated"])
    result += group
    return result


def layers_contract() -> list[str]:
    """The layers of the import-linter contract, highest first."""
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return list(contract["layers"])


def layers_dot() -> str:
    """The layers as boxes, highest on top; one arrow down between two layers
    (each imports from those below). Boxes of an independent layer are apart."""
    lines = [
        "digraph layers {",
        '  graph [rankdir=TB, compound=true, nodesep=0.25, ranksep=0.35, bgcolor="transparent"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#f5f5f5", '
        'fontname="Helvetica", fontsize=11];',
        '  edge [arrowsize=0.6, color="#555555"];',
    ]
    firsts = []
    for index, layer in enumerate(layers_contract()):
        independent = "|" in layer
        modules = [m.strip() for m in layer.replace(":", "|").split("|")]
        note = "independent of one another" if independent and len(modules) > 1 else ""
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f'    label="{note}"; fontname="Helvetica"; fontsize=9; fontcolor="#777777";')
        lines.append('    style="rounded,dashed"; color="#bbbbbb";' if note else "    style=invis;")
        for module in modules:
            name = module.removeprefix("flask_posweb.")
            lines.append(f'    "{module}" [label="{name}"];')
        lines.append("  }")
        firsts.append((index, modules[0]))
    for (above, upper), (below, lower) in zip(firsts, firsts[1:], strict=False):
        lines.append(f'  "{upper}" -> "{lower}" [ltail=cluster_{above}, lhead=cluster_{below}];')
    lines.append("}")
    return "\n".join(lines)


class Layers(SphinxDirective):
    """``.. posweb-layers::``: the package's layers, from the import-linter contract."""

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(PYPROJECT))
        node = graphviz()
        node["code"] = layers_dot()
        node["options"] = {"docname": self.env.docname}
        node["alt"] = "The package's layers: each imports only from those below it."
        node["classes"] = ["posweb-layers"]
        return [node]


class ModuleDocstring(SphinxDirective):
    """``.. posweb-docstring:: module``: the module's docstring as part of the page."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.arguments[0])
        text = inspect.getdoc(module) or ""
        # The summary is the first paragraph; the page's own sentence introduces the rest.
        text = text.partition("\n\n")[2]
        kept = []
        skipping = False
        for line in text.splitlines():
            if line.startswith(".. versionadded::"):
                skipping = True
                continue
            if skipping and (not line.strip() or line.startswith(" ")):
                continue
            skipping = False
            kept.append(line)
        source = inspect.getsourcefile(module) or self.arguments[0]
        self.env.note_dependency(source)
        container = nodes.container(classes=["posweb-docstring"])
        self.state.nested_parse(StringList(kept, source=source), self.content_offset, container)
        # Diagrams in docstrings are plain text, not Python to highlight.
        for block in container.findall(nodes.literal_block):
            block["language"] = "text"
        return [container]


def setup(app: Sphinx) -> dict[str, t.Any]:
    app.add_directive("posweb-state-diagram", StateDiagram)
    app.add_directive("posweb-transitions", Transitions)
    app.add_directive("posweb-layers", Layers)
    app.add_directive("posweb-docstring", ModuleDocstring)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
