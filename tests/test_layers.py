"""The package stands in layers: the import-linter contracts in ``pyproject.toml``
hold, every module is in a layer, and the contracts catch what they are for.

The docs' development page draws the same layers, from the same contract
(``docs/_ext/posweb_docs.py``).
"""

from __future__ import annotations

import pathlib
import typing as t

import grimp
import pytest
import tomllib
from importlinter import configuration
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import Contract

ROOT = pathlib.Path(__file__).parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
KINDS: dict[str, type[Contract]] = {
    "layers": LayersContract,
    "forbidden": ForbiddenContract,
    "acyclic_siblings": AcyclicSiblingsContract,
}

configuration.configure()


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """Every import of the package, those under ``TYPE_CHECKING`` and inside functions too."""
    return grimp.build_graph(CONFIG["root_package"], include_external_packages=True, cache_dir=None)


def contract(options: dict[str, t.Any]) -> Contract:
    session = {
        "root_packages": [CONFIG["root_package"]],
        "include_external_packages": CONFIG["include_external_packages"],
    }
    fields = {key: value for key, value in options.items() if key not in ("name", "type")}
    return KINDS[options["type"]](options["name"], session, fields)


def refused_with(
    graph: grimp.ImportGraph, options: dict[str, t.Any], importer: str, imported: str
) -> bool:
    """Whether the contract is broken once ``importer`` imports ``imported``."""
    graph.add_import(importer=importer, imported=imported)
    try:
        return not contract(options).check(graph, verbose=False).kept
    finally:
        graph.remove_import(importer=importer, imported=imported)


def layers() -> list[list[str]]:
    """The layers contract's layers, highest first, each as its modules."""
    (found,) = [c for c in CONFIG["contracts"] if c["type"] == "layers"]
    return [[m.strip() for m in layer.replace(":", "|").split("|")] for layer in found["layers"]]


@pytest.mark.parametrize("options", CONFIG["contracts"], ids=lambda c: c["name"][:40])
def test_every_contract_is_kept(graph: grimp.ImportGraph, options: dict[str, t.Any]) -> None:
    check = contract(options).check(graph, verbose=False)
    assert check.kept, check.metadata


def test_every_module_is_in_a_layer(graph: grimp.ImportGraph) -> None:
    """A module outside the contract would be checked by nothing."""
    listed = [module for layer in layers() for module in layer]
    root = CONFIG["root_package"]
    outside = sorted(
        module
        for module in graph.modules
        if module.startswith(root + ".")
        and not any(module == m or module.startswith(m + ".") for m in listed)
    )
    assert outside == []


def test_the_contract_refuses_an_import_from_a_lower_layer_up(graph: grimp.ImportGraph) -> None:
    """0.2's circle, in one import: dispatch reaching into the app's state."""
    (options,) = [c for c in CONFIG["contracts"] if c["type"] == "layers"]
    assert refused_with(graph, options, "flask_posweb.dispatch.runner", "flask_posweb.state")


def test_sibling_faces_stay_apart(graph: grimp.ImportGraph) -> None:
    """0.2's log page imported ``human`` from the command line."""
    (options,) = [c for c in CONFIG["contracts"] if c["type"] == "layers"]
    assert refused_with(graph, options, "flask_posweb.dashboard.query", "flask_posweb.cli")


def test_the_store_knows_no_flask(graph: grimp.ImportGraph) -> None:
    (options,) = [c for c in CONFIG["contracts"] if "know no Flask" in c["name"]]
    assert refused_with(graph, options, "flask_posweb.inbox.store", "flask")


def test_a_circle_is_refused_at_any_depth(graph: grimp.ImportGraph) -> None:
    """0.2's ``auth/tokens.py`` and ``auth/verification.py`` imported each other."""
    (options,) = [c for c in CONFIG["contracts"] if c["type"] == "acyclic_siblings"]
    assert refused_with(
        graph, options, "flask_posweb.auth.tokens", "flask_posweb.auth.verification"
    )


def test_the_development_page_draws_the_contract() -> None:
    page = (ROOT / "docs" / "development.rst").read_text()
    assert ".. posweb-layers::" in page
