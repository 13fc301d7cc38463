"""The import rules of docs/INTERNALS.md, read from the source (every import, lazy ones too):
no package below the top imports the composed config, each stage package imports only what
its row of the table allows, `model/` stays free of Ray and DeepSpeed, and the library never
imports ray_jobs/, benchmarks/ or tests/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "semacdr_dist"
FOUNDATION = {"rundir", "manifest", "lease", "runtime", "hardware", "errors", "profiling"}
TOP = {"config", "validate", "pipeline", "cli", "__main__", "__init__"}
ALLOWED = {  # package -> what it may import from semacdr_dist (a package, or one module of it)
    "data": FOUNDATION,
    "model": FOUNDATION | {"data"},
    "semantics": FOUNDATION | {"data"},
    "evaluate": FOUNDATION | {"data", "model"},
    "train": FOUNDATION | {"data", "model", "semantics.features", "evaluate.metrics"},
    **{name: FOUNDATION for name in FOUNDATION},
}
SOURCES = sorted(p for p in PKG.rglob("*.py") if p.relative_to(PKG).parts[0] != "conf")


def imports(source: str, module_parts: list[str]) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source``; relative imports resolved against
    ``module_parts`` (["semacdr_dist", "train", "stage"]); ``from a import b`` also gives a.b."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module_parts[: len(module_parts) - node.level] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return out


def violations(source: str, module_parts: list[str]) -> list[str]:
    owner = module_parts[1]
    bad = []
    for line, module in imports(source, module_parts):
        top = module.split(".")[0]
        if top in ("ray_jobs", "benchmarks", "tests"):
            bad.append(f"{line}: {module}: the library never imports ray_jobs/, benchmarks/ or tests/")
        if owner == "model" and top in ("ray", "deepspeed"):
            bad.append(f"{line}: {module}: model/ stays free of Ray and DeepSpeed")
        if owner in TOP or top != "semacdr_dist" or module == "semacdr_dist":
            continue
        ours = module.removeprefix("semacdr_dist.")
        head = ours.split(".")[0]
        allowed = ALLOWED[owner]
        if head == owner or head in allowed or any(ours == a or ours.startswith(a + ".") for a in allowed):
            continue
        if any(a.startswith(ours + ".") for a in allowed):  # `from semacdr_dist.evaluate import metrics`
            continue
        bad.append(f"{line}: {module}: {owner}/ may import only {sorted(allowed)} of semacdr_dist")
    return bad


def test_every_source_has_a_row():
    owners = {p.relative_to(PKG).with_suffix("").parts[0] for p in SOURCES}
    assert len(SOURCES) > 50 and owners <= set(ALLOWED) | TOP, owners - set(ALLOWED) - TOP


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_follow_the_rules(path):
    parts = ["semacdr_dist", *path.relative_to(PKG).with_suffix("").parts]
    assert not violations(path.read_text(), parts), "\n".join(f"{path}:{v}" for v in violations(path.read_text(), parts))


def test_the_rules_catch_upward_and_forbidden_imports():
    """Not vacuous: the old lazy `load_config` import in train/stage.py, a relative import of
    the config from semantics/, Ray in model/ and ray_jobs in data/ all fail."""
    lazy = "def model_config_for(cfg, name):\n    from semacdr_dist.config import load_config\n"
    assert violations(lazy, ["semacdr_dist", "train", "stage"])
    assert violations("from ..config import Config\n", ["semacdr_dist", "semantics", "stage"])
    assert violations("import ray\n", ["semacdr_dist", "model", "base"])
    assert violations("from ray_jobs import local_cluster\n", ["semacdr_dist", "data", "prepare"])
    assert violations("from semacdr_dist.evaluate.stage import run_evaluate\n", ["semacdr_dist", "train", "loop"])
    assert not violations("from semacdr_dist.evaluate import metrics\n", ["semacdr_dist", "train", "scoring"])
    assert not violations("from semacdr_dist.config import load_config\n", ["semacdr_dist", "cli"])
