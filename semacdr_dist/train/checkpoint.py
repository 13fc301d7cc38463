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
