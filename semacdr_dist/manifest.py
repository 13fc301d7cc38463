"""What a stage wrote, checked before anyone reads it.

A finished stage writes ``<stage>/_MANIFEST.json`` just before its done marker:
every output file with its size (and row count for parquet), and a hash of the
config sections that decide its content. Before a stage starts it checks the
files it reads against their producer's manifest, so a deleted or truncated
shard stops it with one message naming the file instead of a silently smaller
evaluation or an ``ArrowInvalid`` without a name. Rerunning a finished stage
with a config that no longer matches its manifest is refused (``force=true``
redoes it) rather than skipped under a config that does not describe the data.

``force=true`` moves the previous outputs aside (:func:`replacing`) and puts
them back if the new run fails, so a failed redo never costs the old results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from semacdr_dist.rundir import RunDir

log = logging.getLogger(__name__)

MANIFEST = "_MANIFEST.json"
RUN_MARKER = "_RUNDIR.json"  # says "this directory is a semacdr-dist run directory"
REPLACED = "_replaced"  # previous outputs while force=true redoes a stage
# Entries a run directory may hold before its first stage (the lease of the command creating it).
_BOOKKEEPING = {"_lease", RUN_MARKER, REPLACED}

# Config keys that change how fast a stage runs, not what it writes: a rerun that only
# changes them is the same stage.
_RUNTIME_KEYS = {
    "data": {"chunk_rows", "num_partitions", "shuffle"},
    "llm": {"num_engines", "max_generation_seconds", "batch_size", "engine_kwargs", "kv_cache_gib",
            "kv_block_size", "threads_per_engine", "max_retries"},
    "encoder": {"num_workers", "batch_size", "threads"},
    "train": {"num_workers", "cpus_per_worker", "max_failures"},
    "evaluate": {"num_shards"},
}


class InputError(RuntimeError):
    """A stage's input does not match what its producer wrote (missing, truncated, extra file)."""


class ConfigChanged(RuntimeError):
    """A finished stage was asked to run again with a config that no longer describes its outputs."""


class NotARunDir(RuntimeError):
    """A non-empty directory that no semacdr-dist command created: we will not write or delete there."""


# -- the config a stage depends on ---------------------------------------------------
def _plain(node: Any) -> Any:
    if dataclasses.is_dataclass(node):
        return OmegaConf.to_container(OmegaConf.structured(node), resolve=True)
    return node


def stage_config(cfg: Any, stage: str) -> dict[str, Any]:
    """The config sections that decide ``stage``'s outputs (runtime-only keys dropped)."""
    kind, _, model = stage.partition("/")
    if kind == "prepare":
        sections = {"seed": cfg.seed, "data": _plain(cfg.data)}
    elif kind == "semantics":
        sections = {"llm": _plain(cfg.llm), "encoder": _plain(cfg.encoder)}
    elif kind == "train":
        mcfg = _plain(cfg.model) if cfg.model.name == model else {"name": model, "max_len": cfg.model.max_len}
        sections = {"seed": cfg.seed, "model": mcfg, "train": _plain(cfg.train)}
    elif kind == "eval":
        sections = {"evaluate": _plain(getattr(cfg, "evaluate", cfg))}  # the whole Config or its evaluate part
    else:
        raise ValueError(f"unknown stage {stage!r}")
    for name, keys in _RUNTIME_KEYS.items():
        if isinstance(sections.get(name), dict):
            sections[name] = {k: v for k, v in sections[name].items() if k not in keys}
    return sections


def config_hash(sections: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


# -- outputs and their manifest ---------------------------------------------------------
STAGE_OUTPUTS = {
    "prepare": ["items", "interactions", "sequences", "rejected", "stats.json"],
    "semantics": ["views", "features", "semantics/report.json"],
}


def stage_outputs(stage: str) -> list[str]:
    kind, _, model = stage.partition("/")
    if kind == "train":
        return [f"export/{model}", f"train/{model}/metrics.jsonl"]
    if kind == "eval":
        return [f"eval/{model}"]
    return STAGE_OUTPUTS[stage]


def _walk(run: RunDir, rel: str) -> Iterator[tuple[str, int]]:
    """(relative path, size) of every finished file at or under ``rel``."""
    info = run.fs.get_file_info(run.path(rel))
    if info.type == pafs.FileType.File:
        yield rel, info.size
    elif info.type == pafs.FileType.Directory:
        root = run.path("")
        for f in run.fs.get_file_info(pafs.FileSelector(info.path, recursive=True)):
            if f.type == pafs.FileType.File and ".tmp-" not in f.base_name and not f.base_name.startswith("_"):
                yield f.path[len(root) :].lstrip("/"), f.size


def build_manifest(run: RunDir, stage: str, cfg: Any) -> dict[str, Any]:
    files = {}
    for out in stage_outputs(stage):
        for rel, size in _walk(run, out):
            entry: dict[str, Any] = {"bytes": size}
            if rel.endswith(".parquet"):
                entry["rows"] = pq.read_metadata(run.path(rel), filesystem=run.fs).num_rows
            files[rel] = entry
    sections = stage_config(cfg, stage)
    return {"stage": stage, "written": time.time(), "config_hash": config_hash(sections),
            "config": sections, "files": files}


def finish_stage(run: RunDir, stage: str, cfg: Any, info: dict | None = None) -> dict[str, Any]:
    """Write the stage's manifest, then its done marker (the marker is last: it means 'whole')."""
    manifest = build_manifest(run, stage, cfg)
    run.write_json(f"{stage}/{MANIFEST}", manifest)
    run.mark_done(stage, info)
    return manifest


def read_manifest(run: RunDir, stage: str) -> dict[str, Any] | None:
    return run.read_json(f"{stage}/{MANIFEST}") if run.exists(stage, MANIFEST) else None


# -- before a stage starts ----------------------------------------------------------------
def should_skip(cfg: Any, run: RunDir, stage: str) -> bool:
    """True if ``stage`` is done under the same config (skip it); raises if done under another.

    With ``cfg.force`` nothing is skipped. A done stage without a manifest (written before
    manifests existed) is trusted as before.
    """
    if getattr(cfg, "force", False) or not run.is_done(stage):
        return False
    check_unchanged(cfg, run, stage)
    return True


def check_unchanged(cfg: Any, run: RunDir, stage: str) -> None:
    manifest = read_manifest(run, stage)
    if manifest is None:
        return
    now = stage_config(cfg, stage)
    if config_hash(now) != manifest["config_hash"]:
        changes = "; ".join(_diff(manifest.get("config", {}), now)[:5])
        raise ConfigChanged(
            f"{run.display(stage)} was finished with another config ({changes}); rerun it with "
            f"force=true to redo it, or use another run_dir"
        )


# Which files of which producer each stage reads.
def stage_inputs(stage: str) -> list[tuple[str, list[str]]]:
    kind, _, model = stage.partition("/")
    if kind == "semantics":
        return [("prepare", ["items/"])]
    if kind == "train":
        return [("prepare", ["items/", "sequences/", "stats.json"]), ("semantics", ["features/"])]
    if kind == "eval":
        return [("prepare", ["items/", "sequences/", "stats.json"]), (f"train/{model}", [f"export/{model}/"])]
    return []


def verify_inputs(run: RunDir, stage: str, producers: Iterable[tuple[str, list[str]]] | None = None) -> int:
    """Check every input file of ``stage`` against its producer's manifest; returns files checked.

    Raises :class:`InputError` naming the first missing, resized or unlisted file. Producers
    without a manifest (hand-made or older run directories) are not checked.
    """
    checked = 0
    for producer, prefixes in stage_inputs(stage) if producers is None else producers:
        manifest = read_manifest(run, producer)
        if manifest is None:
            continue
        listed = {rel: e for rel, e in manifest["files"].items() if rel.startswith(tuple(prefixes))}
        for rel, entry in sorted(listed.items()):
            info = run.fs.get_file_info(run.path(rel))
            if info.type != pafs.FileType.File:
                raise InputError(f"{run.display(rel)}: missing; the {producer} stage wrote it "
                                 f"({_describe(entry)}). Rerun {producer} with force=true")
            if info.size != entry["bytes"]:
                raise InputError(f"{run.display(rel)}: {info.size} bytes, the {producer} stage wrote "
                                 f"{_describe(entry)} (truncated or replaced). Rerun {producer} with force=true")
            checked += 1
        for prefix in {p for p in prefixes if p.endswith("/")}:
            for rel, _ in _walk(run, prefix.rstrip("/")):
                if rel.endswith(".parquet") and rel not in listed:
                    raise InputError(f"{run.display(rel)}: not written by the {producer} stage (not in "
                                     f"{run.display(producer, MANIFEST)}); remove it or rerun {producer} with force=true")
    return checked


def _describe(entry: dict[str, Any]) -> str:
    rows = f", {entry['rows']} rows" if "rows" in entry else ""
    return f"{entry['bytes']} bytes{rows}"


# -- the run directory itself -------------------------------------------------------------
def is_run_dir(run: RunDir) -> bool:
    return any(run.exists(p) for p in (RUN_MARKER, "config.yaml", "prepare/_SUCCESS.json"))


def ensure_run_dir(run: RunDir) -> None:
    """Claim an empty directory as a run directory; refuse a non-empty one we did not create."""
    if is_run_dir(run):
        return
    entries = run.fs.get_file_info(pafs.FileSelector(run.path(""), allow_not_found=True))
    foreign = sorted(e.base_name for e in entries if e.base_name not in _BOOKKEEPING)
    if foreign:
        raise NotARunDir(
            f"{run.display()} is not empty ({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}) and "
            f"is not a semacdr-dist run directory (no {RUN_MARKER} or config.yaml): refusing to write "
            f"or delete there; choose an empty or new run_dir"
        )
    run.write_json(RUN_MARKER, {"created": time.time(), "by": "semacdr-dist"})


# -- force=true: new outputs replace old ones only when complete ------------------------
def owned_files(run: RunDir, roots: Iterable[str], pattern: re.Pattern[str] | None = None) -> list[str]:
    """Files under ``roots`` (relative) that this project wrote: all, or those whose name matches."""
    out = []
    for root in roots:
        info = run.fs.get_file_info(run.path(root))
        if info.type == pafs.FileType.File:
            out.append(root)
        elif info.type == pafs.FileType.Directory:
            base = run.path("")
            for f in run.fs.get_file_info(pafs.FileSelector(info.path, recursive=True)):
                if f.type == pafs.FileType.File and (pattern is None or pattern.fullmatch(f.base_name)):
                    out.append(f.path[len(base) :].lstrip("/"))
    return sorted(out)


@contextlib.contextmanager
def replacing(run: RunDir, files: list[str], *, current: Any = None,
              clean_on_failure: bool = False) -> Iterator[None]:
    """Move ``files`` aside for the block; delete them if it succeeds, put them back if it fails.

    ``current`` is a callable listing the files the block itself wrote (removed before the
    old ones return), so a failed redo leaves exactly the previous outputs. With no previous
    outputs, a failed block's files stay (train resumes from them) unless ``clean_on_failure``.
    """
    if not files:
        try:
            yield
        except BaseException:
            if clean_on_failure:  # e.g. prepare: partial shards are worth nothing
                for rel in current() if current else []:
                    run.delete(rel)
            raise
        return
    aside = f"{REPLACED}/{uuid.uuid4().hex[:12]}"
    for rel in files:
        run.makedirs(f"{aside}/{rel}".rsplit("/", 1)[0])
        run.fs.move(run.path(rel), run.path(aside, rel))
    try:
        yield
    except BaseException:
        log.warning("stage failed: restoring the previous outputs (%d files)", len(files))
        for rel in current() if current else []:
            run.delete(rel)
        for rel in files:
            run.makedirs(rel.rsplit("/", 1)[0]) if "/" in rel else None
            run.fs.move(run.path(aside, rel), run.path(rel))
        run.delete(aside)
        raise
    run.delete(aside)
