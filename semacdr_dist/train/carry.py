"""A portable copy of an unfinished training run: resume it on another machine or in another sitting.

A converged run can take longer than the machine it started on is held (a 3-hour sitting,
a preempted node). Its state lives in `checkpoints/<model>/`, which is scratch. A *carry*
is what it takes to go on elsewhere, in files that can be committed or copied and are safe
to read: safetensors for every tensor, JSON for everything else. Nothing in a carry is
unpickled. It holds:

- `latest/`: the newest complete checkpoint. DeepSpeed's torch-pickle files and
  `model.safetensors` are stored as `ds.safetensors` (their tensors, deduplicated by
  content: in fp32 the exported parameters are DeepSpeed's module tensors) + `ds.json` (the
  structure around them, types tagged; only plain data and an allowlist of DeepSpeed's own
  small classes); a tensor whose bytes are a slice of a flat 1-D tensor of the pool (fp32 ZeRO's
  module parameters inside the optimizer's partition) is stored as that slice's address;
  `state.json` and `latest` are copied as they are.
- `best/`: the best-scoring checkpoint's `model.safetensors` + `state.json`, when it is not
  the latest (export needs only those).
- `metrics.jsonl`: the per-epoch records so far.
- `carry.json`: which checkpoints these are, and the config hashes of the train stage and
  of its inputs: a carry is restored only into a run with the same config and inputs.

`restore_carry` writes the checkpoints back under `checkpoints/<model>/` with their original
names (DeepSpeed's files rebuilt with `torch.save` in this process), so the loop resumes from
the newest one as after a killed driver, and the export picks the best-scoring one on disk.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from semacdr_dist.manifest import config_hash, read_manifest, stage_config
from semacdr_dist.rundir import RunDir
from semacdr_dist.train.checkpoint import (
    DS_TAG,
    PARAMS_FILE,
    STATE_FILE,
    best_saved_checkpoint,
    latest_complete_checkpoint,
)

log = logging.getLogger(__name__)

CARRY_FILE = "carry.json"
DS_TENSORS, DS_STRUCTURE = "ds.safetensors", "ds.json"
# Classes DeepSpeed puts in its checkpoints besides plain data (deepspeed 0.19): rebuilt by
# name from this list only, so a carry cannot name arbitrary code to run.
ALLOWED_CLASSES = frozenset({
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
})


class CarryMismatch(RuntimeError):
    """A carry was made by a run with another config or other inputs."""


# -- the codec: a torch-pickled object tree <-> (tensors, JSON) -------------------------------
def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _allowed_class(path: str) -> type:
    if path not in ALLOWED_CLASSES:
        raise TypeError(f"carry names class {path!r}, which is not in carry.ALLOWED_CLASSES")
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _tensor_key(t: torch.Tensor) -> str:
    raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    digest = hashlib.sha256(raw + f"{t.dtype}{tuple(t.shape)}".encode()).hexdigest()[:24]
    return digest


def encode_tree(obj: Any, tensors: dict[str, torch.Tensor], where: str = "") -> Any:
    """`obj` as JSON data; its tensors go into `tensors` (keyed by content, so duplicates are stored once)."""
    if isinstance(obj, torch.Tensor):
        key = _tensor_key(obj)
        tensors.setdefault(key, obj.detach().cpu().contiguous().clone())
        return {"tensor": key}
    if obj is None or isinstance(obj, (bool, int, float, str)) and not isinstance(obj, enum.Enum):
        return obj
    if isinstance(obj, torch.Size):
        return {"size": list(obj)}
    if isinstance(obj, torch.dtype):
        return {"dtype": str(obj).removeprefix("torch.")}
    if isinstance(obj, dict):
        return {"dict": [[encode_tree(k, tensors, where), encode_tree(v, tensors, f"{where}/{k}")]
                         for k, v in obj.items()],
                "ordered": isinstance(obj, collections.OrderedDict)}
    if isinstance(obj, list):
        return [encode_tree(v, tensors, f"{where}/{i}") for i, v in enumerate(obj)]
    path = _class_path(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        _allowed_class(path)
        return {"namedtuple": path, "fields": [encode_tree(v, tensors, where) for v in obj]}
    if isinstance(obj, tuple):
        return {"tuple": [encode_tree(v, tensors, f"{where}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, enum.Enum):
        _allowed_class(path)
        return {"enum": path, "value": obj.value}
    if path in ALLOWED_CLASSES:
        return {"object": path, "state": encode_tree(vars(obj), tensors, where)}
    raise TypeError(f"cannot carry {path} at {where or '/'}: only tensors, plain data and "
                    f"carry.ALLOWED_CLASSES are stored")


def decode_tree(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `encode_tree`."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [decode_tree(v, tensors) for v in node]
    if "tensor" in node:
        return tensors[node["tensor"]].clone()  # each use its own storage, as in the original tree
    if "size" in node:
        return torch.Size(node["size"])
    if "dtype" in node:
        return getattr(torch, node["dtype"])
    if "dict" in node:
        pairs = [(decode_tree(k, tensors), decode_tree(v, tensors)) for k, v in node["dict"]]
        return collections.OrderedDict(pairs) if node["ordered"] else dict(pairs)
    if "tuple" in node:
        return tuple(decode_tree(v, tensors) for v in node["tuple"])
    if "namedtuple" in node:
        return _allowed_class(node["namedtuple"])(*(decode_tree(v, tensors) for v in node["fields"]))
    if "enum" in node:
        return _allowed_class(node["enum"])(node["value"])
    if "object" in node:
        cls = _allowed_class(node["object"])
        obj = cls.__new__(cls)
        obj.__dict__.update(decode_tree(node["state"], tensors))
        return obj
    raise ValueError(f"unknown carry node {sorted(node)}")


# Tensors at least this large are looked for inside the pool's 1-D tensors (see `share_slices`).
SLICE_MIN_NUMEL = 4096
SLICES = "__slices__"  # the reserved key of ds.json that lists them (DeepSpeed names no file so)
INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def share_slices(tensors: dict[str, torch.Tensor]) -> dict[str, list]:
    """Drop from the pool every tensor whose bytes are a contiguous run of a 1-D pool tensor.

    In fp32 ZeRO, the module's parameters are a copy of slices of the flat fp32 partition that
    the optimizer holds (LLM4CDSR: the [36298, 128] ID table is 21 of the carry's 85 MB); a carry
    is committed, so each byte saved is a byte less in every push. Returns {key: [base key,
    offset, shape]} for `unshare_slices`; the pool is changed in place.
    """
    import numpy as np

    def bits(t: torch.Tensor) -> np.ndarray:
        # Bit patterns, not values: -0.0 is not 0.0 here, NaN equals itself, and bf16 (which
        # numpy lacks) is compared as int16.
        return t.reshape(-1).view(INT_OF_SIZE[t.element_size()]).numpy()

    bases = {k: t for k, t in tensors.items() if t.dim() == 1 and t.numel() >= SLICE_MIN_NUMEL}
    slices: dict[str, list] = {}
    for key, t in list(tensors.items()):
        n = t.numel()
        if key in bases or n < SLICE_MIN_NUMEL:
            continue
        flat = bits(t)
        for base_key, base in bases.items():
            if base.dtype != t.dtype or base.numel() < n:
                continue
            b = bits(base)
            # candidates: where the first element matches and the run fits; the middle element
            # filters most of them before the full comparison.
            starts = np.flatnonzero(b[: len(b) - n + 1] == flat[0])
            starts = starts[b[starts + n // 2] == flat[n // 2]]
            hit = next((int(s) for s in starts if np.array_equal(b[s:s + n], flat)), None)
            if hit is not None:
                slices[key] = [base_key, hit, list(t.shape)]
                del tensors[key]
                break
    return slices


def unshare_slices(tensors: dict[str, torch.Tensor], slices: dict[str, list]) -> None:
    """Put the tensors `share_slices` dropped back into the pool (each its own storage)."""
    for key, (base_key, offset, shape) in slices.items():
        numel = int(torch.Size(shape).numel())
        tensors[key] = tensors[base_key][offset:offset + numel].reshape(shape).clone()


# -- one checkpoint directory <-> its portable form ---------------------------------------------
def pack_checkpoint(run: RunDir, rel: str, dst: Path, params_only: bool = False) -> None:
    """Write the checkpoint at `rel` (under the run) to the local directory `dst`, portable.

    The `.pt` files read here are DeepSpeed's, written by this run's own workers (as a resume
    would read them); what goes out is safetensors + JSON.
    """
    from safetensors.torch import load, save_file

    dst.mkdir(parents=True, exist_ok=True)
    for name in (PARAMS_FILE, STATE_FILE) if params_only else (STATE_FILE, "latest"):
        if run.exists(rel, name):
            (dst / name).write_bytes(run.read_bytes(f"{rel}/{name}"))
    if params_only:
        return
    tensors: dict[str, torch.Tensor] = {}
    structure: dict[str, Any] = {}
    if run.exists(rel, PARAMS_FILE):  # into the shared pool: in fp32 these are DeepSpeed's module tensors
        params = load(run.read_bytes(f"{rel}/{PARAMS_FILE}"))
        structure[PARAMS_FILE] = {name: encode_tree(t, tensors)["tensor"] for name, t in params.items()}
    for path in run.list_files(rel, DS_TAG, suffix=".pt"):
        name = os.path.basename(path)
        tree = torch.load(io.BytesIO(run.read_bytes(f"{rel}/{DS_TAG}/{name}")), map_location="cpu",
                          weights_only=False)
        structure[name] = encode_tree(tree, tensors, name)
    structure[SLICES] = share_slices(tensors)
    save_file(tensors, str(dst / DS_TENSORS))
    (dst / DS_STRUCTURE).write_text(json.dumps(structure))


def unpack_checkpoint(src: Path, run: RunDir, rel: str) -> None:
    """Rebuild the checkpoint at `rel` under the run from `pack_checkpoint`'s output."""
    from safetensors.torch import load_file, save

    for name in (PARAMS_FILE, STATE_FILE, "latest"):
        if (src / name).exists():
            run.write_bytes(f"{rel}/{name}", (src / name).read_bytes())
    if not (src / DS_STRUCTURE).exists():
        return
    tensors = load_file(str(src / DS_TENSORS))
    structure = json.loads((src / DS_STRUCTURE).read_text())
    unshare_slices(tensors, structure.pop(SLICES, {}))  # carries written before slices have none
    for name, node in structure.items():
        if name == PARAMS_FILE:
            run.write_bytes(f"{rel}/{name}", save({k: tensors[key] for k, key in node.items()}))
            continue
        buf = io.BytesIO()
        torch.save(decode_tree(node, tensors), buf)
        run.write_bytes(f"{rel}/{DS_TAG}/{name}", buf.getvalue())


# -- a run's unfinished training <-> a carry directory --------------------------------------------
def carry_identity(cfg: Any, run: RunDir, model_name: str) -> dict[str, Any]:
    """What a carry must match to be restored: the train stage's config and its inputs' configs."""
    inputs = {stage: (read_manifest(run, stage) or {}).get("config_hash") for stage in ("prepare", "semantics")}
    return {"model": model_name, "train_config_hash": config_hash(stage_config(cfg, f"train/{model_name}")),
            "inputs": inputs}


def save_carry(cfg: Any, run: RunDir, model_name: str, dst: Path, monitor: str, num_workers: int,
               zero_stage: int, extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Write (replace) the carry of the run's training of `model_name` at `dst`.

    Returns its `carry.json` (with `extra` merged in), or None when the run has no complete
    checkpoint yet. Written beside `dst` first and swapped in, so a carry is whole or absent.
    """
    latest = latest_complete_checkpoint(run, model_name, num_workers, zero_stage)
    if latest is None:
        return None
    latest_rel = f"checkpoints/{model_name}/{os.path.basename(latest.rstrip('/'))}"
    best = best_saved_checkpoint(run, model_name, monitor)
    best_rel = f"checkpoints/{model_name}/{os.path.basename(best[0].rstrip('/'))}" if best else None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        pack_checkpoint(run, latest_rel, tmp / "latest")
        if best_rel and best_rel != latest_rel:
            pack_checkpoint(run, best_rel, tmp / "best", params_only=True)
        if run.exists("train", model_name, "metrics.jsonl"):
            (tmp / "metrics.jsonl").write_bytes(run.read_bytes(f"train/{model_name}/metrics.jsonl"))
        state = json.loads((tmp / "latest" / STATE_FILE).read_text())
        info = {
            **carry_identity(cfg, run, model_name),
            "latest": os.path.basename(latest_rel), "next_epoch": state.get("epoch"),
            "best": os.path.basename(best_rel) if best_rel else None, "best_epoch": state.get("best_epoch"),
            "best_score": state.get("best"), "monitor": monitor, **(extra or {}),
        }
        (tmp / CARRY_FILE).write_text(json.dumps(info, indent=2))
        old = dst.with_name(f".{dst.name}.old")
        if dst.exists():
            shutil.rmtree(old, ignore_errors=True)  # a stale one, from a writer killed after its first rename
            dst.rename(old)
        tmp.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
        return info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_carry(src: Path) -> dict[str, Any] | None:
    """`carry.json` of the carry at `src`, or None. A writer killed between its two renames
    left the previous carry as `.<name>.old`: it is put back first."""
    old = src.with_name(f".{src.name}.old")
    if not src.exists() and (old / CARRY_FILE).exists():
        old.rename(src)
    return json.loads((src / CARRY_FILE).read_text()) if (src / CARRY_FILE).exists() else None


def restore_carry(cfg: Any, run: RunDir, model_name: str, src: Path) -> dict[str, Any] | None:
    """Put the carry at `src` back into the run, so training resumes where it stopped.

    Does nothing (returns None) when there is no carry or the run already has checkpoints of
    its own (they are at least as new). Raises `CarryMismatch` when the carry was made under
    another train config or other inputs.
    """
    info = read_carry(src)
    if info is None or run.exists("checkpoints", model_name):
        return None
    now = carry_identity(cfg, run, model_name)
    mismatched = [k for k in ("model", "train_config_hash", "inputs") if info.get(k) != now[k]]
    if mismatched:
        raise CarryMismatch(f"{src}: made by a run with another {', '.join(mismatched)} "
                            f"(carry {[info.get(k) for k in mismatched]}, this run {[now[k] for k in mismatched]}); "
                            f"delete it to start over")
    unpack_checkpoint(src / "latest", run, f"checkpoints/{model_name}/{info['latest']}")
    if info.get("best") and info["best"] != info["latest"]:
        unpack_checkpoint(src / "best", run, f"checkpoints/{model_name}/{info['best']}")
    if (src / "metrics.jsonl").exists():
        run.write_bytes(f"train/{model_name}/metrics.jsonl", (src / "metrics.jsonl").read_bytes())
    return info


@contextlib.contextmanager
def keep_carry(cfg: Any, run: RunDir, model_name: str, dst: Path, monitor: str, num_workers: int,
               zero_stage: int, every_s: float = 30.0, before: dict[str, Any] | None = None) -> Iterator[None]:
    """While the block runs (training), refresh the carry at `dst` after each new checkpoint.

    A thread polls the run's checkpoints every `every_s` seconds; on exit it writes the carry
    once more, so the last reported epoch is in it. A failure to write a carry is logged, never
    raised into the training it protects. `before` (the restored carry's `carry.json`) carries
    the wall seconds and sittings spent so far: the carry adds this sitting's.
    """
    from semacdr_dist.hardware import machine_summary

    before = before or {}
    t_enter = time.monotonic()
    machines = [*before.get("machines", []), machine_summary()]
    stop = threading.Event()
    written: list[str | None] = [(read_carry(dst) or {}).get("latest")]

    def refresh() -> None:
        latest = latest_complete_checkpoint(run, model_name, num_workers, zero_stage)
        if latest is None or os.path.basename(latest.rstrip("/")) == written[0]:
            return
        try:
            spent = {"seconds": float(before.get("seconds", 0.0)) + time.monotonic() - t_enter,
                     "sittings": int(before.get("sittings", 0)) + 1, "machines": machines}
            info = save_carry(cfg, run, model_name, dst, monitor, num_workers, zero_stage, spent)
        except Exception:  # noqa: BLE001 - the carry is a copy; training goes on without it
            log.exception("carry of %s to %s failed", model_name, dst)
            return
        if info:
            written[0] = info["latest"]
            log.info("carry of %s: epoch %s (best %s at %s) -> %s", model_name, info["next_epoch"],
                     info["best_score"], info["best_epoch"], dst)

    def poll() -> None:
        while not stop.wait(every_s):
            refresh()

    thread = threading.Thread(target=poll, name=f"carry-{model_name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        refresh()
