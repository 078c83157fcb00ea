"""The rooms of the package and the one-way arrows between them (docs/architecture.md).

    cli -> ops -> format -> schema, errors
    cli -> recorder -> format
    redaction (the naming policy) -> format; used by ops and recorder
    top (aether_rec/__init__.py: open, __version__) -> format
    nothing imports cli; the recorder never imports ops; format imports no other room

Every import counts, also the lazy ones inside functions. The checker is run on planted
samples too, so a rule that cannot fail is caught.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "aether_rec"

# room -> rooms it may import (itself always allowed); "top" is aether_rec/__init__.py
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "schema": {"errors"},
    "optional": {"errors"},  # optional dependencies: imported on use, with an install hint
    "format": {"errors", "schema", "optional", "top"},
    "redaction": {"errors", "schema", "format"},
    "ops": {"errors", "schema", "format", "redaction", "optional", "top"},
    "recorder": {"errors", "schema", "format", "redaction", "workload", "top"},
    "workload": {"errors"},
    "allocator": set(),  # the C allocator's settings for bulk work: the CLI applies them
    "cli": {"errors", "schema", "format", "redaction", "optional", "ops", "recorder", "workload", "allocator",
            "top"},
    "top": {"errors", "format"},
    "console": {"cli"},  # the console script: loads the CLI (part of it)
}
# Modules over MAX_LINES, each with the reason it is one thing.
MAX_LINES = 500
LONG_OK = {
    "ops/perfetto.py": "one writer of Perfetto's protobuf trace: packets, interning, tracks, flows, counters",
    "ops/profile.py": "one streaming pass and the Profile it fills, which report, plot and diff draw from",
    "ops/stats.py": "one streaming accumulator and the document it renders",
}


def room(module: str) -> str:
    """aether_rec.format.reader -> format; aether_rec -> top."""
    parts = module.split(".")
    if parts == ["aether_rec"]:
        return "top"
    return parts[1]


def imports_of(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("aether_rec"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.rsplit(".", node.level)[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("aether_rec"):
                out.add(name)
    return out


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def violations(files: dict[str, set[str]]) -> list[str]:
    """``files``: module -> the aether_rec modules it imports."""
    bad = []
    for mod, deps in sorted(files.items()):
        src = room(mod)
        for dep in sorted(deps):
            dst = room(dep)
            if dst != src and dst not in ALLOWED.get(src, set()):
                bad.append(f"{mod} imports {dep} ({src} -> {dst})")
    return bad


def package_imports() -> dict[str, set[str]]:
    return {module_name(p, PKG): imports_of(p, module_name(p, PKG)) for p in sorted(PKG.rglob("*.py"))}


def test_every_import_follows_the_arrows() -> None:
    assert violations(package_imports()) == []


def test_the_rooms_cover_the_package() -> None:
    rooms = {room(m) for m in package_imports()}
    assert rooms <= set(ALLOWED), rooms - set(ALLOWED)


@pytest.mark.parametrize("mod,dep", [
    ("aether_rec.recorder.session", "aether_rec.ops.redact"),  # the recorder must not use ops
    ("aether_rec.format.reader", "aether_rec.ops.window"),     # format is below ops
    ("aether_rec.ops.stats", "aether_rec.cli.common"),         # nothing imports the CLI
    ("aether_rec.format.writer", "aether_rec.recorder.output"),
    ("aether_rec.redaction", "aether_rec.ops.units"),
])
def test_the_checker_catches_a_wrong_arrow(mod: str, dep: str) -> None:
    files = package_imports()
    files[mod] = files.get(mod, set()) | {dep}
    assert violations(files) == [f"{mod} imports {dep} ({room(mod)} -> {room(dep)})"]


def test_lazy_and_relative_imports_count(tmp_path: Path) -> None:
    pkg = tmp_path / "aether_rec" / "format"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from aether_rec.ops import stats\n    from ..cli import common\n")
    got = imports_of(f, "aether_rec.format.x")
    assert got == {"aether_rec.ops", "aether_rec.cli"}
    assert len(violations({"aether_rec.format.x": got})) == 2


def test_no_module_level_import_cycles_outside_the_recorder() -> None:
    """Module-level imports only (lazy imports are how a cycle is broken on purpose); the
    recorder's transport/perfbuf circle is being removed by the session split."""
    graph: dict[str, set[str]] = {}
    for p in sorted(PKG.rglob("*.py")):
        mod = module_name(p, PKG)
        tree = ast.parse(p.read_text(encoding="utf-8"))
        deps = set()
        for node in tree.body:
            name = node.module or "" if isinstance(node, ast.ImportFrom) and not node.level else ""
            if name.startswith("aether_rec"):
                deps.add(name)
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("aether_rec"))
        graph[mod] = {d for d in deps if d != mod}
    assert find_cycles(graph) == []


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Import cycles through a module outside the recorder (a package's __init__ importing
    its own submodules is not one)."""
    cycles = []
    for start in graph:
        if room(start) == "recorder":
            continue
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, nxt]))
                elif nxt not in seen and nxt in graph:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    # a package's __init__ importing its own submodules is not a cycle of rules
    cycles = [c for c in cycles if not all(x.startswith(c.split(" -> ")[0]) for x in c.split(" -> "))]
    return cycles


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"aether_rec.ops.a": {"aether_rec.ops.b"}, "aether_rec.ops.b": {"aether_rec.format.c"},
             "aether_rec.format.c": {"aether_rec.ops.a"}, "aether_rec.ops": {"aether_rec.ops.a"}}
    want = "aether_rec.ops.a -> aether_rec.ops.b -> aether_rec.format.c -> aether_rec.ops.a"
    assert want in find_cycles(graph)
    assert find_cycles({"aether_rec.ops.expr": {"aether_rec.ops.expr.nodes"},
                        "aether_rec.ops.expr.nodes": {"aether_rec.ops.expr.fields"}}) == []


def test_modules_stay_small_unless_they_are_one_thing() -> None:
    long = {p.relative_to(PKG).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
            for p in PKG.rglob("*.py")}
    too_long = sorted(f"{k} ({n} lines)" for k, n in long.items() if n > MAX_LINES and k not in LONG_OK)
    assert too_long == []
    stale = sorted(k for k in LONG_OK if long.get(k, 0) <= MAX_LINES)
    assert stale == [], f"no longer long, drop from LONG_OK: {stale}"


def test_offline_outputs_are_driven_by_the_schema() -> None:
    """A column added to schema.COLUMNS reaches the expression language, the row formats
    (replay, export jsonl/csv) and parquet without another edit."""
    import json

    import numpy as np

    from aether_rec.format.chunk import Chunk
    from aether_rec.ops.expr import FIELDS
    from aether_rec.ops.rows import CSV_FIELDS, lines
    from aether_rec.schema import COLUMNS

    names = [c.name for c in COLUMNS]
    assert set(names) <= set(FIELDS)
    assert set(names) <= set(CSV_FIELDS)
    chunk = Chunk.from_columns({c.name: (np.array(["x"], dtype=object) if c.is_str else np.zeros(1, c.dtype))
                                for c in COLUMNS})
    (rec,) = [json.loads(x) for x in lines("jsonl", chunk, None)]
    assert set(names) <= set(rec)
    (row,) = lines("csv", chunk, None)
    assert len(row.rstrip("\n").split(",")) == len(CSV_FIELDS)
