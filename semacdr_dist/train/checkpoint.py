"""What a training checkpoint holds besides DeepSpeed's own files.

A reported checkpoint directory contains:
- `ds/` + `latest`: the DeepSpeed checkpoint (every rank writes its ZeRO
  partition; model, optimizer, LR scheduler) used to resume training;
- `model.safetensors`: the model's trainable parameters in fp32, gathered on
  rank 0 (whatever the ZeRO stage), used for export and for comparing runs;
- `state.json`: the loop's own state (next epoch, best metric, patience).

Export reads only safetensors + JSON, never a pickle.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

DS_TAG = "ds"
PARAMS_FILE = "model.safetensors"
STATE_FILE = "state.json"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters (fp32, CPU, contiguous) by name; frozen buffers are rebuilt from features."""
    return {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters()}


def save_params(model: torch.nn.Module, directory: str) -> str:
    from safetensors.torch import save_file

    path = os.path.join(directory, PARAMS_FILE)
    save_file(trainable_state(model), path)
    return path


def load_params(model: torch.nn.Module, directory: str) -> None:
    """Load `model.safetensors` into `model`; every parameter must be present with its shape."""
    from safetensors.torch import load_file

    path = os.path.join(directory, PARAMS_FILE)
    tensors = load_file(path)
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise ValueError(f"{path}: parameters do not match the model (missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        for name, p in params.items():
            if tuple(tensors[name].shape) != tuple(p.shape):
                raise ValueError(f"{path}: '{name}' has shape {tuple(tensors[name].shape)}, model expects {tuple(p.shape)}")
            p.copy_(tensors[name].to(p.dtype))


def write_state(directory: str, state: dict[str, Any]) -> None:
    with open(os.path.join(directory, STATE_FILE), "w") as f:
        json.dump(state, f, indent=2)


def read_state(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, STATE_FILE)) as f:
        return json.load(f)


def checkpoint_names(run, model_name: str) -> list[str]:
    """Names of the `checkpoint_*` directories under `checkpoints/<model>/`, oldest first
    (Ray names them by time)."""
    if not run.exists("checkpoints", model_name):
        return []
    import pyarrow.fs as pafs

    infos = run.fs.get_file_info(pafs.FileSelector(run.path("checkpoints", model_name)))
    return sorted(i.base_name for i in infos
                  if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_"))


def latest_complete_checkpoint(run, model_name: str, num_workers: int, zero_stage: int) -> str | None:
    """URI of the newest checkpoint under `checkpoints/<model>/` whose files are all there.

    Ray Train registers a reported checkpoint asynchronously: a run that dies right
    after a report can leave a whole checkpoint on disk that Ray's own state does not
    list yet. Resuming from it (rather than from scratch) loses nothing. Complete =
    the parameters, the loop state, DeepSpeed's model states and, with ZeRO >= 1, the
    optimizer shard of every rank.
    """
    root = ("checkpoints", model_name)
    names = checkpoint_names(run, model_name)[::-1]
    needed = [PARAMS_FILE, STATE_FILE, f"{DS_TAG}/mp_rank_00_model_states.pt"]
    if zero_stage > 0:
        needed += [f"{DS_TAG}/zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(num_workers)]
    for name in names:
        if all(run.exists(*root, name, f) for f in needed):
            return run.uri_of(*root, name)
    return None


def best_saved_checkpoint(run, model_name: str, monitor: str) -> tuple[str, dict[str, Any]] | None:
    """(URI, metrics) of the highest-`monitor` checkpoint on disk under `checkpoints/<model>/`.

    Ray's result lists only the checkpoints its own run reported; a run resumed by a new
    driver (after a kill, or from a carry) also has its earlier best on disk. Every reported
    checkpoint writes its metrics into `state.json`; ties go to the earliest epoch.
    """
    root = ("checkpoints", model_name)
    scored = []
    for name in checkpoint_names(run, model_name):
        if not (run.exists(*root, name, PARAMS_FILE) and run.exists(*root, name, STATE_FILE)):
            continue
        metrics = run.read_json("/".join([*root, name, STATE_FILE])).get("metrics") or {}
        score = metrics.get(monitor)
        if isinstance(score, (int, float)) and score >= 0:
            scored.append((score, -int(metrics.get("epoch", 0)), run.uri_of(*root, name), metrics))
    if not scored:
        return None
    _, _, uri, metrics = max(scored, key=lambda s: (s[0], s[1]))
    return uri, metrics
