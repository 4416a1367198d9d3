"""The plugin works installed the napari way: napari + a Qt binding + this
package, no extras.

Test environments install every extra, which hides a module that only an extra
provides (pyqtgraph once was). These tests see such gaps without building a new
environment: one reads every import in the package (lazy ones included) and
checks that a base dependency provides it; the others run the plugin in a
subprocess in which every installed package outside "napari[pyqt6] + our base
dependencies" cannot be imported.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_b2u"

#: The application that loads the plugin: never a dependency (see pyproject.toml).
HOST = {"napari"}
#: Import names whose distribution has another name, for when it is not installed.
DIST_OF = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml"}
QT_BINDINGS = {"pyqt5", "pyqt6", "pyside2", "pyside6"}
#: A fresh virtual environment has these before anything is installed.
VENV_BASE = {"pip", "setuptools", "wheel"}


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def base_requirements() -> list[Requirement]:
    return [Requirement(r) for r in pyproject()["project"]["dependencies"]]


def extra_requirements(extra: str) -> list[Requirement]:
    return [Requirement(r) for r in pyproject()["project"]["optional-dependencies"][extra]]


def names(requirements) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def dist_of(module: str) -> str:
    """The distribution an import name comes from (installed metadata first)."""
    found = metadata.packages_distributions().get(module)
    return canonicalize_name(found[0] if found else DIST_OF.get(module, module))


def _guarded(parents: list[ast.AST]) -> bool:
    """Whether an import sits in a ``try`` that catches ImportError."""
    for node in parents:
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                caught = ast.unparse(handler.type) if handler.type is not None else "Exception"
                if "ImportError" in caught or "ModuleNotFoundError" in caught:
                    return True
    return False


def package_imports() -> list[tuple[str, str, bool]]:
    """``(module, where, guarded)`` for every absolute import in the package,
    at module level and inside functions alike."""
    found = []

    def visit(node: ast.AST, parents: list[ast.AST], where: str) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                modules = [node.module] if node.level == 0 and node.module else []
            for module in modules:
                found.append((module.split(".")[0], f"{where}:{node.lineno}", _guarded(parents)))
        for child in ast.iter_child_nodes(node):
            visit(child, [*parents, node], where)

    for path in sorted(PACKAGE.rglob("*.py")):
        visit(ast.parse(path.read_text()), [], str(path.relative_to(ROOT)))
    return found


def test_every_import_is_provided_by_a_base_dependency():
    base = names(base_requirements())
    extras = {
        name: names(extra_requirements(name))
        for name in pyproject()["project"]["optional-dependencies"]
    }
    problems = []
    for module, where, guarded in package_imports():
        if module in sys.stdlib_module_names or module in ("napari_b2u", "__future__"):
            continue
        if module in HOST:
            if not (where.startswith("src/napari_b2u/_widgets/") or guarded):
                problems.append(f"{where}: napari imported outside the widgets, unguarded")
            continue
        dist = dist_of(module)
        if dist in base:
            continue
        in_extra = [name for name, dists in extras.items() if dist in dists and name != "testing"]
        if in_extra and guarded:
            continue  # optional, with a message saying which extra to install
        problems.append(
            f"{where}: imports {module!r} (distribution {dist!r}), which is not a base "
            f"dependency{' (only in extra ' + ', '.join(in_extra) + ', unguarded)' if in_extra else ''}"
        )
    assert not problems, "\n".join(problems)


def test_base_dependencies_hold_no_qt_binding_and_no_napari():
    base = base_requirements()
    assert not names(base) & QT_BINDINGS
    assert not names(base) & HOST, "napari is the host application, not a dependency"
    assert not any(r.extras for r in base if canonicalize_name(r.name) == "napari")
    # ... and what a napari user needs comes with the `all` extra
    assert any(
        canonicalize_name(r.name) == "napari" and "all" in r.extras
        for r in extra_requirements("all")
    )


def closure(roots: list[Requirement]) -> set[str]:
    """Installed distributions that ``roots`` pull in, extras followed."""
    extras: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in extras and set(req.extras) <= extras[name]:
            continue
        extras.setdefault(name, set()).update(req.extras)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            dep = Requirement(text)
            wanted = ["", *extras[name]]
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(dep)
    return set(extras)


def napari_way_distributions() -> set[str]:
    """What ``pip install "napari[pyqt6]"`` then ``pip install napari-b2u`` installs
    (with the Qt binding that is here, if another)."""
    bindings = [Requirement(b) for b in QT_BINDINGS if _installed(b)]
    napari = Requirement("napari[pyqt6]")
    return closure([napari, *bindings, *base_requirements()]) | VENV_BASE | {"napari-b2u"}


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def hidden_modules() -> list[str]:
    """Import names of every installed package outside `napari_way_distributions`."""
    allowed = napari_way_distributions()
    hidden = []
    for module, dists in metadata.packages_distributions().items():
        if module == "napari_b2u" or module.startswith("__editable__"):
            continue
        if not {canonicalize_name(d) for d in dists} & allowed:
            hidden.append(module)
    return sorted(hidden)


def run_hidden(
    args: list[str], hide: list[str], timeout: float = 600
) -> subprocess.CompletedProcess:
    env = {**os.environ, "B2U_HIDE": ",".join(hide)}
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "hide_packages.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_hiding_works():
    """The harness itself: a hidden module really cannot be imported."""
    result = run_hidden(["-m", "json.tool", "--help"], ["json"])
    assert result.returncode != 0 and "No module named 'json'" in result.stderr


def test_extras_only_packages_are_hidden():
    hidden = hidden_modules()
    assert "pytest" in hidden  # a testing extra: a napari user does not have it
    assert "torch" not in hidden and "napari" not in hidden and "qtpy" not in hidden


@pytest.mark.gui
@pytest.mark.slow
def test_widgets_and_samples_work_installed_the_napari_way():
    pytest.importorskip("napari")
    result = run_hidden([str(ROOT / "scripts" / "napari_smoke.py")], hidden_modules())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "napari smoke test passed" in result.stdout


def test_api_and_cli_work_without_napari_or_qt(tmp_path):
    """A headless server: no napari, no Qt binding."""
    hide = [*hidden_modules(), "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy"]
    model = tmp_path / "m.safetensors"
    code = (
        "import numpy as np, tifffile\n"
        "from napari_b2u.api import train\n"
        "from napari_b2u.__main__ import main\n"
        "image = np.random.default_rng(0).random((48, 48), dtype=np.float32)\n"
        "model = train(image, steps=2, time_budget=None, depth=2, features=4, patch_size=16)\n"
        "assert model.denoise(image).shape == image.shape\n"
        f"tifffile.imwrite({str(tmp_path / 'a.tif')!r}, image)\n"
        f"assert main(['train', {str(tmp_path / 'a.tif')!r}, '--model', {str(model)!r}, '-q',"
        " '--steps', '2', '--time-budget', '0', '--depth', '2', '--features', '4',"
        " '--patch-size', '16']) == 0\n"
        f"assert main(['info', {str(model)!r}]) == 0\n"
    )
    result = run_hidden(["-c", code], hide)
    assert result.returncode == 0, result.stderr[-4000:]


def test_demo_gui_without_napari_says_what_to_install():
    result = run_hidden(["-m", "napari_b2u", "demo", "--gui"], ["napari"])
    assert result.returncode == 2, result.stderr
    assert "pip install" in result.stderr and "napari" in result.stderr
    assert "Traceback" not in result.stderr
