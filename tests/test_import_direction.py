"""DESIGN.md: imports point down the layer list only; transformers is never imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bertforge"
# module -> bertforge sub-packages it may import (besides itself)
ALLOWED = {
    "config": set(),
    "tokenization": {"config"},
    "metrics": set(),
    "model": {"config", "interop.checkpoint"},  # only inside from/save_pretrained
    "pretraining": {"config", "tokenization"},
    "interop": {"config", "model"},
    "tasks": {"config", "tokenization", "model", "metrics", "interop"},
    "training": {"config", "tokenization", "model", "metrics", "interop", "tasks",
                 "pretraining"},
    "inference": {"config", "tokenization", "model", "interop", "tasks", "metrics"},
}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
    return out


def test_layers_import_downward_only():
    problems = []
    for layer, allowed in ALLOWED.items():
        files = [PACKAGE / f"{layer}.py"] if (PACKAGE / f"{layer}.py").exists() else sorted(
            (PACKAGE / layer).rglob("*.py"))
        for path in files:
            for module in imports_of(path):
                if not module.startswith("bertforge."):
                    continue
                target = module.removeprefix("bertforge.")
                if target.split(".")[0] == layer:
                    continue
                if not any(target == a or target.startswith(a + ".") or
                           target == a.split(".")[0] and "." not in a for a in allowed):
                    problems.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    assert not problems, "\n".join(problems)


def test_library_never_imports_transformers_or_cli():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        for module in imports_of(path):
            if rel.as_posix() != "cli/bench.py":  # the benchmark measures against it
                assert not module.startswith("transformers"), f"{rel} imports {module}"
            if rel.parts[0] != "cli" and rel.name != "__main__.py":
                assert not module.startswith("bertforge.cli"), f"{rel} imports {module}"
