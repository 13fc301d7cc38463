"""The DeepSpeed dict rendered from the Hydra `train` group, and the exact validation metrics."""

from __future__ import annotations

import math

import pytest
import torch

from semacdr_dist.config import load_config
from semacdr_dist.evaluate.metrics import target_ranks
from semacdr_dist.hardware import cpu_info
from semacdr_dist.train.config import TrainConfig
from semacdr_dist.train.deepspeed_config import render_deepspeed_config, total_optimizer_steps
from semacdr_dist.train.scoring import full_sort_topk, metrics_from_sums, rank_metric_sums


def _ranks(scores, batch, item_domain) -> list[int]:
    """Validation's ranks: top-K ids from the full scores, then the one target_ranks."""
    return target_ranks(full_sort_topk(scores, batch, item_domain).numpy(), batch["target"].numpy()).tolist()


def test_presets_compose_and_render():
    cpu = load_config(["train=cpu"]).train
    gpu = load_config(["train=gpu"]).train
    assert (cpu.num_workers, cpu.zero_stage, cpu.precision, cpu.use_gpu) == (2, 1, "auto", False)
    assert (gpu.precision, gpu.use_gpu, gpu.backend) == ("auto", True, "nccl")
    ds = render_deepspeed_config(gpu, world_size=8, total_steps=1000)
    assert ds["bf16"] == {"enabled": True}  # auto on GPUs = bf16
    # auto on this CPU: bf16 only where it is native.
    native = cpu_info().native_bf16
    assert render_deepspeed_config(cpu, world_size=2, total_steps=10)["bf16"] == {"enabled": native}
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["train_batch_size"] == gpu.batch_size * 8 * gpu.grad_accum


def test_render_fields():
    cfg = TrainConfig(zero_stage=3, precision="fp32", batch_size=32, grad_accum=4, clip=0.5, lr=2e-3,
                      weight_decay=0.01, warmup=10, schedule="linear")
    ds = render_deepspeed_config(cfg, world_size=2, total_steps=100)
    assert ds["train_micro_batch_size_per_gpu"] == 32
    assert ds["gradient_accumulation_steps"] == 4
    assert ds["train_batch_size"] == 32 * 4 * 2
    assert ds["gradient_clipping"] == 0.5
    assert ds["optimizer"]["type"] == "AdamW"
    assert ds["optimizer"]["params"]["torch_adam"] is True
    assert ds["optimizer"]["params"]["lr"] == 2e-3 and ds["optimizer"]["params"]["weight_decay"] == 0.01
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["bf16"]["enabled"] is False
    assert ds["scheduler"]["type"] == "WarmupDecayLR"
    assert ds["scheduler"]["params"]["total_num_steps"] == 100
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 10
    cos = render_deepspeed_config(TrainConfig(schedule="cosine"), 2, 50)["scheduler"]
    assert cos["type"] == "WarmupCosineLR" and cos["params"]["total_num_steps"] == 50
    assert render_deepspeed_config(TrainConfig(schedule="constant"), 2, 50)["scheduler"]["type"] == "WarmupLR"


def test_total_steps():
    cfg = TrainConfig(batch_size=10, epochs=3, grad_accum=2)
    # 101 rows on 2 ranks -> 51 rows per rank -> 6 micro-steps per epoch -> 18 micro -> 9 optimizer steps
    assert total_optimizer_steps(cfg, 101, 2) == 9


@pytest.mark.parametrize(
    "field,value",
    [("zero_stage", 4), ("precision", "fp16"), ("schedule", "step"), ("batch_size", 0), ("keep_best_k", 0),
     ("lr", 0), ("length_buckets", 0), ("backend", "ncl")],
)
def test_bad_values_name_the_field_at_load(field, value):
    """Refused when the config is loaded, before any stage runs (not when training starts)."""
    with pytest.raises(Exception, match=f"train.{field}"):
        load_config([f"train.{field}={value}"])


@pytest.mark.parametrize("field,value", [("precision", "fp16"), ("schedule", "step"), ("backend", "ncl")])
def test_bad_choices_name_the_field_when_built_in_python(field, value):
    with pytest.raises(ValueError, match=f"train.{field}"):
        TrainConfig(**{field: value})


def test_unknown_key_fails_at_composition():
    with pytest.raises(Exception, match="zero_stag"):
        load_config(["train.zero_stag=2"])


def test_rank_metrics_hand_computed():
    # 5 items, domains [0, 0, 1, 0, 1]; two users with target domain 0 and 1.
    item_domain = torch.tensor([0, 0, 1, 0, 1])
    scores = torch.tensor([[0.1, 0.9, 5.0, 0.5, 9.0],   # target 3 (0.5): only item 1 beats it in domain 0 -> rank 2
                           [9.0, 9.0, 0.2, 9.0, 0.1]])  # target 4 (0.1): item 2 beats it in domain 1 -> rank 2
    no_history = torch.full((2, 3), -1)
    batch = {"target": torch.tensor([3, 4]), "target_domain": torch.tensor([0, 1]), "history": no_history}
    assert _ranks(scores, batch, item_domain) == [2, 2]
    # history items leave the candidates; a target already in the history is a miss (0)
    batch["history"] = torch.tensor([[-1, 1, 0], [-1, -1, 4]])
    assert _ranks(scores, batch, item_domain) == [1, 0]
    # ties are broken by item id, as in the evaluate stage
    tied = {"target": torch.tensor([1, 3]), "target_domain": torch.tensor([0, 0]), "history": torch.full((2, 1), -1)}
    assert _ranks(torch.zeros(2, 5), tied, item_domain) == [2, 3]
    # the top-K list itself: domain 0's items {0, 1, 3}, all tied, in id order; empty slots -1
    assert full_sort_topk(torch.zeros(2, 5), tied, item_domain, k=4).tolist() == [[0, 1, 3, -1]] * 2
    m = metrics_from_sums(rank_metric_sums(torch.tensor([1, 2, 13, 0])))
    assert m["valid/hr@10"] == pytest.approx(2 / 4)
    assert m["valid/ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(3)) / 4)
    assert m["valid/mrr@10"] == pytest.approx((1 + 1 / 2) / 4)
    assert m["valid/count"] == 4
