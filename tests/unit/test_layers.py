"""The layers of the README's layout table, held to the code's imports.

Each layer may import only the layers before it in `LAYERS` (the README's
"Layout" table, in the same order), and no module imports itself round a
cycle, counting imports inside functions. Imports under `if TYPE_CHECKING:`
are for the type checker only and never run, so they are left out.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "emulator"

#: The layers, first to last: a layer imports only layers before it. Each entry is the
#: top-level names under emulator/ it holds (packages or modules).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors", ("errors", "__init__")),
    ("model", ("model",)),
    ("scenario", ("scenario",)),
    ("network", ("network",)),
    ("traffic", ("traffic",)),
    ("engine", ("engine", "_engine")),
    ("routing", ("routing",)),
    ("measure", ("measure",)),
    ("report", ("report", "terminal")),
    ("testbed", ("testbed",)),
    ("multihost", ("multihost",)),
    ("deploy", ("deploy",)),
    ("run", ("run", "bench", "pytest_plugin")),
    ("cli", ("cli_testbed", "cli_multihost", "cli")),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            hidden.update(id(n) for n in ast.walk(node))
    return hidden


def _imports() -> dict[str, set[str]]:
    """module -> the emulator modules it imports (anywhere in it, TYPE_CHECKING left out)."""
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        hidden = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("emulator"):
                # `from emulator.run import collect` imports the module emulator.run.collect
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("emulator")]
            graph[name].update(t for t in targets if (t in modules or t == "emulator._engine") and t != name)
    return graph


def _layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for rank, (_, names) in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} is in no layer of LAYERS (add it, and to the README's layout table)")


def test_every_import_goes_to_an_earlier_layer() -> None:
    wrong = []
    for module, targets in sorted(_imports().items()):
        for target in sorted(targets):
            here, there = _layer_of(module), _layer_of(target)
            if there > here:
                wrong.append(f"{module} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_module_imports_itself_round_a_cycle() -> None:
    graph = _imports()
    seen: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[str] = []

    def visit(module: str) -> None:
        seen[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if seen.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in seen:
                visit(target)
        path.pop()
        seen[module] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_readme_lists_the_layers_in_this_order() -> None:
    """The README's layout table has a row per layer, in LAYERS' order (so the two say the same)."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout"):]
    rows = re.findall(r"^\| ([a-z /]+) \|", table, flags=re.MULTILINE)
    rows = [row for row in rows if row != "layer"]
    listed = [name for name, _ in LAYERS]
    assert [row.split(" / ")[0] for row in rows[:len(listed)]] == listed


#: One concept per module: a module past this has grown a second (issue 12).
MAX_MODULE_LINES = 600


def test_no_module_is_over_the_line_budget() -> None:
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "cext").glob("*.p*x*")]
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in sources
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, f"over {MAX_MODULE_LINES} lines (split it by concept):\n" + "\n".join(long)
