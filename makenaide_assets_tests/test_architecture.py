"""The layers hold: a pure strategy core, no import cycle between sub-packages, no `definitions`
import from code that runs inside a run. Read from the source, so a new import is judged too."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "makenaide_assets"
TOP = "makenaide_assets"

# Which first-party units each unit may import. A unit is a sub-package (`strategy`) or a
# top-level module (`settings`). `definitions` sits on top and nothing imports it but the entry
# points that run outside any run (the demo, the CLI's code location).
ALLOWED: dict[str, set[str]] = {
    "strategy": set(),
    "settings": set(),
    # The local Dagster instance's storage, named by dagster.yaml only.
    "instance": set(),
    "sql": {"settings"},
    "partitions": {"settings"},
    "resources": {"strategy", "settings", "sql"},
    "testing": {"strategy"},
    "market": {"strategy", "resources", "partitions", "settings"},
    "analysis": {"strategy", "resources", "partitions", "settings", "market"},
    "trading": {"strategy", "resources", "partitions", "settings", "market", "analysis", "jobs"},
    "jobs": {"partitions"},
    "pipeline": {"market", "analysis", "trading", "resources", "jobs"},
    "days": {"strategy"},
    # The fast engine runs the analysis assets' own functions (backtest/fast.py).
    "backtest": {
        "strategy",
        "resources",
        "partitions",
        "settings",
        "market",
        "analysis",
        "trading",
        "pipeline",
        "days",
    },
    "definitions": {"settings", "backtest", "pipeline", "resources"},
    "demo": {"settings", "days", "definitions", "resources", "partitions", "sql", "strategy"},
    "status": {"settings", "sql", "strategy", "resources", "analysis"},
    # The live rehearsal builds live mode's definitions itself, against the local exchange.
    "rehearsal": {"strategy", "resources", "testing", "pipeline", "days"},
}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != TOP:
        return None
    return parts[1] if len(parts) > 1 else TOP


def _imports() -> dict[str, set[tuple[str, str]]]:
    """unit -> {(imported unit, file)} for every first-party import, lazy ones included."""
    edges: dict[str, set[tuple[str, str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        unit = _unit(module)
        assert unit is not None
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                target = _unit(name)
                if target is not None and target not in (unit, TOP):
                    # `from makenaide_assets import settings` names the unit in the alias.
                    edges.setdefault(unit, set()).add((target, str(path.relative_to(PACKAGE.parent))))
    return edges


def _known_units() -> set[str]:
    """Top-level modules and sub-packages (folders holding Python code; data folders are not units)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.rglob("*.py"))}
    return modules | packages


def test_every_unit_has_a_declared_place() -> None:
    units = _known_units()
    assert units <= set(ALLOWED), f"add {sorted(units - set(ALLOWED))} to ALLOWED with the layers it may import"


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_imports_follow_the_layers(unit: str) -> None:
    edges = _imports()
    wrong = sorted((target, where) for target, where in edges.get(unit, set()) if target not in ALLOWED[unit])
    assert not wrong, f"{unit} may import only {sorted(ALLOWED[unit])}; found {wrong}"


def test_no_import_cycle_between_units() -> None:
    graph = {unit: {target for target, _ in targets} for unit, targets in _imports().items()}
    seen: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(unit: str, stack: list[str]) -> None:
        seen[unit] = 1
        for target in sorted(graph.get(unit, set())):
            if seen.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                raise AssertionError(f"import cycle: {' → '.join(cycle)}")
            if target not in seen:
                visit(target, [*stack, target])
        seen[unit] = 2

    for unit in sorted(graph):
        if unit not in seen:
            visit(unit, [unit])


def test_the_layer_rules_themselves_have_no_cycle() -> None:
    """ALLOWED is the intended picture; it must be a layering, not a tangle."""
    graph = {unit: set(targets) for unit, targets in ALLOWED.items()}
    order: list[str] = []
    while graph:
        ready = sorted(u for u, targets in graph.items() if not targets - set(order))
        assert ready, f"ALLOWED has a cycle among {sorted(graph)}"
        order += ready
        for unit in ready:
            del graph[unit]


def test_strategy_imports_without_dagster() -> None:
    """Every strategy module, with Dagster made unimportable, in a fresh interpreter."""
    modules = sorted(p.stem for p in (PACKAGE / "strategy").glob("*.py") if p.stem != "__init__")
    code = (
        "import sys, importlib\n"
        "sys.modules['dagster'] = None\n"  # `import dagster` now raises ImportError
        f"for name in {modules!r}:\n"
        "    importlib.import_module('makenaide_assets.strategy.' + name)\n"
        "assert 'dagster' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print(len(" + repr(modules) + "))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) == len(modules) >= 10
