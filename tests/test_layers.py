"""The package's layers: imports run one way, core names no arch, light commands stay light.

These read the source (ast) and run the CLI in fresh interpreters; none depends on --arch.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import pfnmap

PACKAGE_DIR = Path(pfnmap.__file__).parent
SOURCE_DIRS = {
    "pfnmap": PACKAGE_DIR,
    "pfnmap.arches": Path(importlib.import_module("pfnmap.arches").__file__).parent,
    "pfnmap.plugins": Path(importlib.import_module("pfnmap.plugins").__file__).parent,
}

#: the layers, bottom first: a module may import from its own layer and the ones before it
LAYERS = (
    "errors",
    "arch",
    "kernel",
    "plugins",
    "arches",
    "machine",
    "decode",
    "scenarios",
    "testing",
    "render",
    "cli",
)
#: the package's own top-level modules, usable from every layer above the kernel
FOUNDATION = {"_lazy": "errors", "_moved": "errors", "(root)": "kernel", "__main__": "cli"}


def _module_name(prefix: str, root: Path, path: Path) -> str:
    parts = [*prefix.split("."), *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return FOUNDATION["(root)"]
    return FOUNDATION.get(parts[1], parts[1])


def _sources() -> dict[str, Path]:
    out = {}
    for prefix, root in SOURCE_DIRS.items():
        for path in root.rglob("*.py"):
            if prefix == "pfnmap" and path.relative_to(root).parts[0] in ("arches", "plugins"):
                continue
            out[_module_name(prefix, root, path)] = path
    return out


def _runtime_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``pfnmap`` import that runs (at module level or in a function), skipping the
    ones under ``if TYPE_CHECKING:``, which only type checkers see."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skipped.update(id(n) for n in ast.walk(inner))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pfnmap"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("pfnmap")]
    return found


def test_every_module_belongs_to_a_layer() -> None:
    unknown = {m: _layer(m) for m in _sources() if _layer(m) not in LAYERS}
    assert not unknown, f"modules outside the known layers: {unknown}"


def test_imports_run_from_the_top_layer_down() -> None:
    """cli -> render -> testing -> scenarios -> decode -> machine -> arches -> plugins -> kernel
    -> arch -> errors: no module imports from a layer above its own (so no circle between
    layers)."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for module, path in sorted(_sources().items()):
        mine = rank[_layer(module)]
        for line, target in _runtime_imports(path):
            if target.startswith("pfnmap_"):  # a third-party package, not ours
                continue
            theirs = rank.get(_layer(target))
            if theirs is not None and theirs > mine:
                upward.append(f"{path.name}:{line} ({_layer(module)}) imports {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pfnmap.machine import Machine\n"
        "def f():\n    from pfnmap.cli.main import main\n"
    )
    assert _runtime_imports(bad) == [(5, "pfnmap.cli.main")]


#: what an arch is called in code or in a user's words
ARCH_WORDS = re.compile(r"x86|i386|amd64|sparc|riscv|arm64|aarch64", re.IGNORECASE)


def test_core_names_no_arch_outside_docstrings_and_comments() -> None:
    """Facts about an arch live on its Arch (arches/ and plugins), so adding an arch edits no
    core file: no string or name in core/ (pfnmap's own package) says which arch it means."""
    found = []
    for module, path in _sources().items():
        if _layer(module) in ("arches", "plugins"):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = None if id(node) in docstrings else node.value
            elif isinstance(node, ast.Name | ast.Attribute | ast.arg):
                text = getattr(node, "id", None) or getattr(node, "attr", None) or node.arg
            if text and ARCH_WORDS.search(text):
                found.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno}: {text[:60]!r}")
    assert not found, "arch names in core code:\n" + "\n".join(found)


# what a light command loads ---------------------------------------------------------------------
HEAVY = ("numpy", "construct", "rich", "pluggy", "elftools")

_PROBE = """
import sys
sys.argv = {argv!r}
try:
    {call}
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print('HEAVY:', ' '.join(heavy))
"""


def _heavy_modules_after(call: str, argv: list[str]) -> list[str]:
    code = _PROBE.format(argv=argv, call=call, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    line = [row for row in done.stdout.splitlines() if row.startswith("HEAVY:")][-1]
    return line.split()[1:]


@pytest.mark.parametrize(
    "call, argv",
    [
        ("import pfnmap", ["python"]),
        ("import pfnmap.cli.main as m; m.main(['--help'])", ["pfnmap", "--help"]),
        ("import pfnmap.cli.main as m; m.main(['decode', '--help'])", ["pfnmap"]),
        ("import pfnmap.cli.main as m; m.main(['--version'])", ["pfnmap"]),
    ],
    ids=["import", "help", "decode-help", "version"],
)
def test_light_commands_load_no_heavy_library(call: str, argv: list[str]) -> None:
    """``import pfnmap`` and ``pfnmap --help`` cost what argparse costs: numpy, construct, rich,
    pluggy and pyelftools load when a command that needs them runs, not before."""
    assert _heavy_modules_after(call, argv) == []


def test_a_real_command_does_load_what_it_needs() -> None:
    """The probe above can see a heavy import (so its empty answer means something)."""
    loaded = _heavy_modules_after("import pfnmap.cli.main as m; m.main(['arches'])", ["pfnmap"])
    assert {"numpy", "construct", "pluggy", "rich"} <= {m.split(".")[0] for m in loaded}


# one copy of the package --------------------------------------------------------------------------
def test_the_package_is_only_ever_pfnmap(request: pytest.FixtureRequest) -> None:
    """The source folder is core/, but the tests never import it as a second package ``core``:
    pytest runs in importlib mode (no checkout folder put on sys.path for the test files) and
    no test module names ``core``."""
    assert request.config.getoption("importmode") == "importlib"
    assert "core" not in sys.modules
    tests_dir = Path(__file__).parent
    named = []
    for path in tests_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named += [f"{path.name}: {a.name}" for a in node.names if a.name == "core"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "core":
                named.append(f"{path.name}: {node.module}")
    assert not named


def test_old_module_paths_are_the_new_modules() -> None:
    """0.1.0's flat module names still import, as the very module that replaced them."""
    from pfnmap.kernel import remap

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("pfnmap.remap")
    assert old is remap
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert "pfnmap.kernel.remap" in str(caught[0].message)
