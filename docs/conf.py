"""Sphinx configuration: the Pallets look (Flask's theme), nothing from the network."""

from __future__ import annotations

import pathlib
import sys

from pallets_sphinx_themes import get_version

# Local extensions that draw tables and diagrams from the code at build time.
sys.path.insert(0, str(pathlib.Path(__file__).parent / "_ext"))

project = "Flask-PosWeb"
copyright = "2026, the Flask-PosWeb maintainers"
author = "the Flask-PosWeb maintainers"
release, version = get_version("Flask-PosWeb")

default_role = "code"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "myst_parser",
    "pallets_sphinx_themes",
    "posweb_docs",
]
exclude_patterns = ["_build"]
# CHANGES.md starts at its second heading level, under the page's own title.
suppress_warnings = ["myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True

# SVG drawn by Graphviz's `dot` at build time (apt-get install graphviz).
graphviz_output_format = "svg"

html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_sidebars = {
    "index": ["project.html", "localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
html_static_path = ["_static"]
html_css_files = ["posweb.css"]
html_title = f"Flask-PosWeb Documentation ({version})"
html_show_sourcelink = False
# The theme's version banner asks PyPI from the reader's browser: no network here.
version_banner = False
