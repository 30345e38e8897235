"""dvc.yaml cannot fall behind the code: every stage declares the modules it imports and the params it reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

SRC = ROOT / "src"
# The configuration package reads every key to validate it; that decides no stage's outputs.
VALIDATION = SRC / "slmtune" / "config"
SECTIONS = {"seed", "hw", "model", "data", "train", "build", "eval"}


def module_file(name: str) -> Path | None:
    """The source file of an slmtune module or package, or None for anything else."""
    if name != "slmtune" and not name.startswith("slmtune."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every module `path` imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def package_inits(name: str) -> list[str]:
    """The packages above a module, which Python imports first (`slmtune.config.schema` -> `slmtune.config`)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def slmtune_files(script: Path) -> set[Path]:
    """Every slmtune source file a stage script imports, directly or not (packages' __init__ included)."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            for module in (*package_inits(name), name):
                found = module_file(module)
                if found is not None and found not in seen:
                    pending.append(found)
    return seen


def attribute_path(node: ast.Attribute) -> list[str]:
    """`params.model.max_length` -> ["params", "model", "max_length"] (empty if not rooted at a name)."""
    parts: list[str] = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    return [current.id, *reversed(parts)] if isinstance(current, ast.Name) else []


def params_read(files: set[Path]) -> set[str]:
    """Dotted params keys the code reads as `params.section` or `params.section.key` (the longest chains)."""
    keys = set()
    for path in files:
        if VALIDATION in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            chain = attribute_path(node)
            if len(chain) >= 2 and chain[0] == "params" and chain[1] in SECTIONS:
                keys.add(".".join(chain[1:3]))
    return keys


def stage_script(stage: dict) -> Path:
    module = re.search(r"python -m (slmtune\.stages\.\w+)", stage["cmd"]).group(1)
    return module_file(module)


def declared_params(stage: dict) -> set[str]:
    return {entry if isinstance(entry, str) else next(iter(entry)) for entry in stage.get("params", [])}


def covered(key: str, declared: set[str]) -> bool:
    """A key is covered by itself or by a declared section above it (`model` covers `model.max_length`)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in declared for i in range(1, len(parts) + 1))


def dep_covers(dep: str, path: Path) -> bool:
    target = (ROOT / dep).resolve()
    return path == target or target in path.parents


def missing_deps(stage: dict) -> list[str]:
    deps = stage.get("deps", [])
    files = slmtune_files(stage_script(stage))
    return sorted(str(p.relative_to(ROOT)) for p in files if not any(dep_covers(dep, p) for dep in deps))


def missing_params(stage: dict) -> list[str]:
    declared = declared_params(stage)
    return sorted(key for key in params_read(slmtune_files(stage_script(stage))) if not covered(key, declared))


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_depends_on_every_module_it_imports(name):
    assert missing_deps(STAGES[name]) == []


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_declares_every_params_section_it_reads(name):
    assert missing_params(STAGES[name]) == []


def test_the_check_fails_when_a_module_dep_is_removed():
    stage = {**STAGES["merge"], "deps": [d for d in STAGES["merge"]["deps"] if d != "src/slmtune/merging.py"]}
    assert "src/slmtune/merging.py" in missing_deps(stage)


def test_the_check_fails_when_a_params_section_is_removed():
    stage = {**STAGES["eval"], "params": [p for p in STAGES["eval"]["params"] if p != "hw"]}
    assert any(key.startswith("hw") for key in missing_params(stage))
