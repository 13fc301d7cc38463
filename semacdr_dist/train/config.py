"""Configuration of the train stage (Hydra group `train`).

Everything the worker loop and the DeepSpeed config need comes from here; the
DeepSpeed JSON is rendered from these fields by `deepspeed_config.render_deepspeed_config`.
Every value is checked when the config is loaded (`semacdr_dist.validate`, and the enum
types below, which Hydra enforces at composition), not when training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from semacdr_dist.errors import as_choice
from semacdr_dist.model.config import ModelConfig


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Schedule(StrEnum):
    cosine = "cosine"
    linear = "linear"
    constant = "constant"


class DistBackend(StrEnum):
    nccl = "nccl"
    gloo = "gloo"


@dataclass
class TrainConfig:
    # Ray Train workers (one DeepSpeed rank each). 2 = the smallest real data-parallel run on a laptop.
    num_workers: int = 2
    # Put each worker on a GPU (NCCL); False = CPU workers with gloo and DS_ACCELERATOR=cpu.
    use_gpu: bool = False
    # torch.distributed backend; null = nccl when use_gpu else gloo.
    backend: DistBackend | None = None
    # Resources per worker (Ray resource dict); 1 CPU fits 2 workers on a 2-core box with num_cpus=4.
    resources_per_worker: dict = field(default_factory=lambda: {"CPU": 1})
    # DeepSpeed ZeRO stage 0 (plain DDP), 1 (optimizer states), 2 (+grads), 3 (+params).
    zero_stage: int = 1
    # auto | fp32 | bf16. auto = bf16 on GPUs and on CPUs with native bf16 (avx512_bf16 / AMX),
    # fp32 on other CPUs (emulated bf16 is slower than fp32); resolved on each worker.
    precision: Precision = Precision.auto
    # Maximum passes over the train split (early stopping may end sooner); 50 with patience 5 is
    # the convergence protocol of the README's quality table. configs/train/cpu.yaml shortens
    # both for the demo.
    epochs: int = 50
    # Sequences per worker per micro-step (DeepSpeed train_micro_batch_size_per_gpu).
    batch_size: int = 128
    # Micro-steps per optimizer step (DeepSpeed gradient_accumulation_steps).
    grad_accum: int = 1
    # Gradient-norm clip (DeepSpeed gradient_clipping); 0 disables it.
    clip: float = 1.0
    # Peak learning rate of AdamW (SASRec-family models train well at 1e-3).
    lr: float = 1.0e-3
    # AdamW decoupled weight decay.
    weight_decay: float = 0.0
    # Warmup optimizer steps (linear from 0 to lr); a fraction of an epoch on small data.
    warmup: int = 20
    # LR decay after warmup: cosine | linear | constant (to 0 at the last planned step).
    schedule: Schedule = Schedule.cosine
    # Stop after this many validations without a better valid metric (0 = never stop early).
    patience: int = 5
    # Checkpoints kept by Ray Train, best by `monitor` (the latest is kept too, for resume); >= 1.
    keep_best_k: int = 2
    # Validation metric that selects the best checkpoint and drives early stopping.
    monitor: str = "valid/ndcg@10"
    # Worker-group restarts allowed after a worker dies (each resumes from the last checkpoint).
    max_failures: int = 2
    # Rows in Ray Data's local shuffle buffer per worker (0 = no shuffle); a few batches' worth.
    # Above 65,536 the loop fills that many rows and permutes them whole (a full shuffle when it
    # is at least the worker's shard: what benchmarks/quality.py uses); the train split is
    # stored user by user, so a small buffer draws each batch from neighbouring users.
    shuffle_buffer: int = 2048
    # Length bucketing: draw batch_size x this many (shuffled) rows, sort them by history
    # length, cut them into batches and shuffle the batch order. A batch is padded to its
    # longest history, so its cost follows its rows' lengths, not the longest of 128 random
    # rows (Food-Kitchen: mean history 5.8, mean random-batch width 41.7). 1 = off.
    length_buckets: int = 8
    # Validate (and checkpoint) every this many epochs.
    valid_every: int = 1
    # Valid sequences scored per validation (0 = all); caps validation time on big runs.
    valid_max_examples: int = 0
    # Sequences scored per validation batch (the [B, N] score matrix bounds its memory).
    eval_batch_size: int = 256
    # Seed of model init and shuffling (added to the top-level seed).
    seed: int = 0
    # Test hook: the worker of this rank exits hard (os._exit) once, mid-epoch `fail_at_epoch`,
    # to exercise FailureConfig; -1 = never. A marker file under the run dir makes it fire once.
    fail_rank: int = -1
    # Epoch (0-based) in which `fail_rank` dies after its first micro-step.
    fail_at_epoch: int = 1

    def __post_init__(self) -> None:
        self.precision = as_choice(Precision, self.precision, "train.precision")
        self.schedule = as_choice(Schedule, self.schedule, "train.schedule")
        if self.backend is not None:
            self.backend = as_choice(DistBackend, self.backend, "train.backend")


@dataclass
class TrainStageConfig:
    """Everything the train stage reads; the pipeline assembles it (`pipeline.train_config`)."""

    # The model to train: the run's `model`, or a baseline's preset with the run's max_len.
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    # The run's seed (TrainConfig.seed is added to it).
    seed: int = 0
    # Redo a finished train/<model> instead of skipping it.
    force: bool = False
