"""Imports run one way: every import of every library and trainer module, lazy ones inside functions included,
goes from a unit to a unit in a lower layer (or stays inside its own unit).

The layers, top to bottom, as the code has them:

    cli
    workflows, trainers/          demo and benchmark; nnU-Net's trainer classes (thin, over unlearning)
    unlearning                    the trainers' machinery: it runs the hook and writes the certificate
    evidence                      report, plots, audit table, certificate, verdict: reads what was measured
    evaluation                    measuring: metrics, hook, audit, membership tests, the calibration rule
    request                       the forget step (reads an original's recipe off its trainer class: med3d)
    med3d, conversion
    nnunet, optim, subjects       nnU-Net adapters; the optimizer recipe; the subject ↔ case map
    artifacts                     a run folder's file names and readers
    files, records                atomic writes and hashes; the shapes of our JSON files (TypedDicts)
    errors, the package root (its version), the trainers folder's __init__ (it only marks the folder)

A unit is a package under ``nnunet_unlearning/`` or a top-level module there. A new one fails this test
until it is given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "nnunet_unlearning"
ROOT, TRAINERS, TRAINERS_FOLDER = "nnunet_unlearning", "trainers", "trainers/__init__"

LAYERS: list[set[str]] = [
    {"cli"},
    {"workflows", TRAINERS},
    {"unlearning"},
    {"evidence"},
    {"evaluation"},
    {"request"},
    {"med3d", "conversion"},
    {"nnunet", "optim", "subjects"},
    {"artifacts"},
    {"files", "records"},
    {"errors", ROOT, TRAINERS_FOLDER},
]
LAYER = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str | None:
    """The unit a dotted module name belongs to; None for a module that is not ours."""
    parts = module.split(".")
    if parts[0] == "nnunet_unlearning_trainers":  # the installed name of the trainers/ folder
        return TRAINERS if len(parts) > 1 else TRAINERS_FOLDER
    if parts[0] != ROOT:
        return None
    if len(parts) == 1:
        return ROOT
    return parts[1]


def _is_unit(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _imported_units(path: Path) -> list[tuple[int, str]]:
    """(line, unit) of every import of ours in ``path``, at any depth (functions, TYPE_CHECKING blocks)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, _unit(alias.name)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; spell the package"
            if node.module == ROOT:  # `from nnunet_unlearning import x`: x is a unit or the root's own name
                found += [(node.lineno, alias.name if _is_unit(alias.name) else ROOT) for alias in node.names]
            elif node.module:
                found.append((node.lineno, _unit(node.module)))
    return [(line, unit) for line, unit in found if unit is not None]


def _modules() -> list[tuple[Path, str]]:
    """Every library and trainer module with its unit."""
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        unit = ROOT if relative == Path("__init__.py") else relative.parts[0].removesuffix(".py")
        modules.append((path, unit))
    for path in sorted((REPO / "trainers").glob("*.py")):
        modules.append((path, TRAINERS_FOLDER if path.name == "__init__.py" else TRAINERS))
    return modules


def test_every_unit_has_a_layer():
    units = {unit for _, unit in _modules()}
    assert units - set(LAYER) == set(), "give the new unit a layer in LAYERS"
    assert set(LAYER) - units == set(), "a layer names a unit that no longer exists"


def test_imports_run_one_way():
    wrong = []
    for path, unit in _modules():
        for line, target in _imported_units(path):
            if target != unit and LAYER.get(target, -1) <= LAYER[unit]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {unit} imports {target}")
    assert wrong == []


def test_the_check_sees_lazy_imports(tmp_path):
    """The parser finds an import inside a function and maps it to its unit (so the test above can fail)."""
    module = tmp_path / "lazy.py"
    module.write_text(
        "def f():\n    from nnunet_unlearning.workflows.demo import run_demo\n"
        "    import nnunet_unlearning_trainers\n    from nnunet_unlearning import evidence, __version__\n"
    )
    assert _imported_units(module) == [(2, "workflows"), (3, TRAINERS_FOLDER), (4, "evidence"), (4, ROOT)]
