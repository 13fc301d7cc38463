"""Render the DeepSpeed config dict from the Hydra `train` group.

One plain function, so the JSON a run used is reproducible from its config
and testable without starting anything. The values were checked when the config
was loaded (`semacdr_dist.validate`, the enums of `train.config`).
"""

from __future__ import annotations

import math
from typing import Any

from semacdr_dist.hardware import resolve_precision
from semacdr_dist.train.config import Schedule, TrainConfig


def total_optimizer_steps(cfg: TrainConfig, n_train: int, world_size: int) -> int:
    """Optimizer steps of the whole run: the LR schedule's horizon."""
    micro_per_epoch = math.ceil(math.ceil(n_train / world_size) / cfg.batch_size)
    return max(1, math.ceil(micro_per_epoch * cfg.epochs / cfg.grad_accum))


def render_deepspeed_config(cfg: TrainConfig, world_size: int, total_steps: int) -> dict[str, Any]:
    """The DeepSpeed config dict of a run of `total_steps` optimizer steps on `world_size` ranks.

    ``precision: auto`` is resolved here on the driver's machine; each worker resolves it
    again on its own (`loop._agreed_precision`) and overrides the ``bf16`` section.
    """
    precision, _ = resolve_precision(cfg.precision, cfg.use_gpu)
    warmup = min(cfg.warmup, max(total_steps - 1, 0))
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": float(cfg.clip),
        # torch's AdamW: DeepSpeed's fused Adam needs a 75 s JIT build on CPU and nothing faster here.
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": cfg.lr,
                "betas": [0.9, 0.999],
                "eps": 1e-8,
                "weight_decay": cfg.weight_decay,
                "torch_adam": True,
            },
        },
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": False},
        "steps_per_print": 10**9,  # progress goes through our logger, once per epoch
        "wall_clock_breakdown": False,
    }
    if cfg.zero_stage == 3:
        # Small models: gather whole layers at once instead of many tiny all-gathers.
        ds["zero_optimization"].update({"stage3_param_persistence_threshold": 0, "overlap_comm": False})
    if cfg.schedule == Schedule.cosine:
        ds["scheduler"] = {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": total_steps,
                "warmup_num_steps": warmup,
                "warmup_min_ratio": 0.0,
                "cos_min_ratio": 0.0,
                "warmup_type": "linear",
            },
        }
    elif cfg.schedule == Schedule.linear:
        ds["scheduler"] = {
            "type": "WarmupDecayLR",
            "params": {
                "total_num_steps": max(total_steps, warmup + 1),
                "warmup_min_lr": 0.0,
                "warmup_max_lr": cfg.lr,
                "warmup_num_steps": warmup,
                "warmup_type": "linear",
            },
        }
    else:
        ds["scheduler"] = {
            "type": "WarmupLR",
            "params": {
                "warmup_min_lr": 0.0,
                "warmup_max_lr": cfg.lr,
                "warmup_num_steps": warmup,
                "warmup_type": "linear",
            },
        }
    return ds
