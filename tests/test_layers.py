"""The package's imports point one way: no cycle between modules, and no import from a lower layer to
a higher one. LAYERS lists the parts of `sweepd` from the bottom up; a part may import only parts
listed before it (and itself). A new part has to be placed here, which is the point."""

import ast
from pathlib import Path

PKG = Path(__file__).parent.parent / "daemon" / "sweepd"

LAYERS = [
    # records and helpers
    "errors", "vocab", "atomic", "audit", "procs", "fstype", "quiet", "logsetup", "stats", "configfile", "paths", "families",
    "sbatchopts",
    "request", "records",
    "settings",
    # the GPU layer, the queue and the workload
    "gpu", "freqplan", "queue", "workload",
    # the engine, and what reads its results
    "engine", "progress", "report",
    # the SLURM executor and the storage manager
    "slurm", "storage", "fit",
    # the application layer, then what calls it besides the command line
    "ops", "spool", "catalogue",
    # the daemon, then the command line
    "daemon", "cli", "__main__",
]


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        out[".".join(rel.parts).removesuffix(".__init__")] = p
    return out


def edges() -> dict[str, set[str]]:
    mods = modules()
    out: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for n in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[:len(parts) - n.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in n.names]
            for x in names:
                while x and x not in mods:
                    x = x.rpartition(".")[0]
                if x and x != m and not m.startswith(x + "."):
                    out[m].add(x)
    return out


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_has_a_layer():
    unplaced = {part(m) for m in modules()} - set(LAYERS) - {""}
    assert not unplaced, f"place these in LAYERS: {sorted(unplaced)}"


def test_no_import_goes_up_a_layer():
    rank = {p: i for i, p in enumerate(LAYERS)}
    up = sorted(f"{m} -> {w}" for m, ws in edges().items() for w in ws
                if part(m) and part(w) and part(m) != part(w) and rank[part(w)] > rank[part(m)])
    assert not up, "imports from a lower layer to a higher one:\n" + "\n".join(up)


def test_no_import_cycle_between_modules():
    graph = edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan, iterative enough for this package's depth
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"
