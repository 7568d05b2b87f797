"""Sphinx configuration for the pfnmap documentation.

Build with warnings as errors, as tox's ``docs`` environment does::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

import pfnmap

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "pfnmap"
author = "the pfnmap authors"
copyright = "pfnmap authors"
release = pfnmap.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "pfnmap_layouts",  # the per-arch pages, generated from the construct layouts
]

exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# the whole site is offline: no intersphinx, no remote images
html_theme = "alabaster"
html_title = f"pfnmap {release}"
html_theme_options = {
    "description": "The Linux 2.6.15 VM_PFNMAP core, emulated on real MMU encodings",
    "fixed_sidebar": True,
    "page_width": "1240px",
    "sidebar_width": "230px",
}
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # show ``rules=SEED``, not the dataclass's repr
autoclass_content = "class"

# plain ``::`` blocks (bit diagrams, kernel log lines) stay unhighlighted; Python sessions are
# doctest blocks (``>>>``) or say ``.. code-block:: python``
highlight_language = "none"
nitpicky = False
