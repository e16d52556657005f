"""Import rules between layers, checked mechanically (the pure model does no I/O)."""

from __future__ import annotations

import ast
from pathlib import Path

TUNER = Path(__file__).resolve().parents[2] / "tuner"
PURE_FORBIDDEN = {
    "os",
    "subprocess",
    "socket",
    "pyroute2",
    "yaml",
    "structlog",
    "tenacity",
    "shutil",
    "time",
}
LAYER_ORDER = [
    "model",
    "core",
    "policy",
    "adapters",
    "observe",
    "actuators",
    "journal",
    "exporters",
    "engine",
    "lab",
]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


# routes.py uses socket.inet_pton as a pure, fast address parser, nothing else.
ALLOWED = {"routes.py": {"socket"}}


def test_model_and_core_are_pure() -> None:
    for path in [*(TUNER / "model").glob("*.py"), *(TUNER / "core").glob("*.py")]:
        bad = {
            n
            for n in imports(path)
            if n.split(".")[0] in PURE_FORBIDDEN and n not in ALLOWED.get(path.name, set())
        }
        assert not bad, f"{path.name} imports {bad}"


def test_layers_import_only_downwards() -> None:
    for layer in LAYER_ORDER:
        above = set(LAYER_ORDER[LAYER_ORDER.index(layer) + 1 :]) | {"cli", "commands"}
        for path in (TUNER / layer).glob("*.py"):
            upward = {
                n for n in imports(path) if n.startswith("tuner.") and n.split(".")[1] in above
            }
            assert not upward, f"{layer}/{path.name} imports {upward}"
