"""`train_loop_per_worker`: one DeepSpeed rank of a Ray Train run.

Everything comes from `config` (built by `semacdr_dist.train.trainer.loop_config`):
the model and train dataclasses, the rendered DeepSpeed dict, the run URI. The
loop resumes from `ray.train.get_checkpoint()` when there is one, so a worker
restart (FailureConfig) and a rerun of the stage after the driver died both
continue from the last reported epoch.

Per epoch: stream the train shard (`iter_torch_batches` + `SequenceCollate`,
local shuffle buffer), validate exactly on this rank's slice of the valid split,
all-reduce the metric sums, then every rank saves its DeepSpeed partition into a
temporary directory and reports it; rank 0 adds the gathered fp32 parameters
(`model.safetensors`) and the loop state.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import signal
import tempfile
import time
from typing import Any

import numpy as np
import torch

from semacdr_dist.data.batch import SequenceCollate, collate_rows
from semacdr_dist.hardware import resolve_precision
from semacdr_dist.profiling import own_memory_bytes
from semacdr_dist.rundir import RunDir
from semacdr_dist.train.checkpoint import (
    DS_TAG,
    latest_complete_checkpoint,
    save_params,
    write_state,
)
from semacdr_dist.train.config import TrainConfig
from semacdr_dist.train.scoring import metrics_from_sums, score_batches
from semacdr_dist.train.state import append_metrics, load_inputs

log = logging.getLogger(__name__)
# Seconds between rank 0's progress lines within an epoch.
PROGRESS_EVERY_S = 60.0


def _worker_logging() -> None:
    pkg = logging.getLogger("semacdr_dist")
    if not pkg.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        pkg.addHandler(h)
    pkg.setLevel(logging.INFO)


class _LossModule(torch.nn.Module):
    """What DeepSpeed wraps: forward = `calculate_loss`, so ZeRO-3's forward hooks run."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.calculate_loss(batch)


def _valid_batches(config: dict, domains: list[str], rank: int, world: int, device: torch.device):
    """This rank's slice of the valid split as padded batches + 0/1 row weights.

    Every rank gets the same number of rows (short slices repeat their last row
    with weight 0) so collective calls inside the model (ZeRO-3) stay in step.
    """
    tcfg: TrainConfig = config["train"]
    table = RunDir(config["run_uri"]).read_table("sequences", "valid")
    if tcfg.valid_max_examples:
        table = table.slice(0, tcfg.valid_max_examples)
    n = table.num_rows
    per_rank = max(1, math.ceil(n / world))
    idx = np.arange(rank, n, world)
    weight = np.ones(per_rank, dtype=np.int64)
    if len(idx) < per_rank:
        weight[len(idx) :] = 0
        idx = np.concatenate([idx, np.full(per_rank - len(idx), idx[-1] if len(idx) else 0)])
    rows = table.take(idx)
    bs = tcfg.eval_batch_size
    batches, weights = [], []
    for start in range(0, per_rank, bs):
        batches.append(collate_rows(rows.slice(start, bs), config["max_len"], domains, device))
        weights.append(torch.as_tensor(weight[start : start + bs]))
    return batches, weights


def _allocator() -> str:
    """The malloc this worker runs on (trainer.worker_malloc_env picks it): jemalloc or glibc."""
    try:
        with open("/proc/self/maps") as f:
            return "jemalloc" if "jemalloc" in f.read() else "glibc"
    except OSError:
        return "unknown"


def _agreed_precision(tcfg: TrainConfig) -> str:
    """``train.precision`` resolved on this worker's machine, the same on every rank.

    "auto" is bf16 only where the CPU has native bf16 (or on GPUs); a cluster whose
    workers differ trains in fp32 unless every rank has it (ranks must agree).
    """
    import torch.distributed as dist

    precision, reason = resolve_precision(tcfg.precision, tcfg.use_gpu)
    if tcfg.precision == "auto" and not tcfg.use_gpu and dist.is_initialized() and dist.get_world_size() > 1:
        flag = torch.tensor([1 if precision == "bf16" else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if precision == "bf16" and not flag.item():
            precision, reason = "fp32", "another rank's CPU has no native bf16"
    log.info("train precision %s: %s", precision, reason)
    return precision


def _gathered(engine, stage: int):
    """All parameters materialised on every rank (ZeRO-3 partitions them), else a no-op."""
    if stage == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)
    return contextlib.nullcontext()


def _all_reduce(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        t = t.to(device)
        dist.all_reduce(t)
    return t.cpu()


def length_buckets(batch: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Rows of ``batch`` cut into batches of ``size`` rows of similar history length, in random order.

    Ties in length are broken at random, so which rows share a batch still varies by epoch.
    """
    n = len(batch["target"])
    lengths = np.fromiter((len(h) for h in batch["history"]), dtype=np.float64, count=n)
    order = np.argsort(lengths + rng.random(n), kind="stable")
    chunks = [order[i : i + size] for i in range(0, n, size)]
    rng.shuffle(chunks)
    return [{k: v[idx] for k, v in batch.items()} for idx in chunks]


# Shuffle buffers above this many rows are filled and permuted whole by `_windowed_batches`:
# Ray Data's sliding local buffer re-copies itself as it refills, and at 400k rows (a full
# shuffle of Food-Kitchen's 351k train examples) it grew each worker by 0.6-2 GB per epoch
# (SemaCDR / LLM4CDSR) until Ray's OOM killer stepped in.
WINDOW_SHUFFLE_ABOVE = 65_536


def _windowed_batches(shard, tcfg: TrainConfig, collate, seed: int):
    """`_epoch_batches` for large buffers: windows of `shuffle_buffer` rows (the whole shard when
    it is at least that big: a full shuffle) as one Arrow table each, permuted by a seeded RNG,
    then drawn `batch_size x length_buckets` rows at a time. One window's rows in memory."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    draw = tcfg.batch_size * max(1, tcfg.length_buckets)
    for window in shard.iter_batches(batch_size=tcfg.shuffle_buffer, batch_format="pyarrow"):
        window = window.take(pa.array(rng.permutation(window.num_rows)))
        for start in range(0, window.num_rows, draw):
            part = window.slice(start, draw)
            big = {c: part.column(c).to_numpy(zero_copy_only=False) for c in part.column_names}
            if tcfg.length_buckets <= 1:
                yield collate(big)
                continue
            for batch in length_buckets(big, tcfg.batch_size, rng):
                yield collate(batch)


def _epoch_batches(shard, tcfg: TrainConfig, collate, seed: int):
    """One epoch of collated batches from the worker's Ray Data shard (shuffled, maybe bucketed).

    Every rank has the same number of rows (equal split), so bucketing keeps the ranks'
    step counts equal: each draw of batch_size x k rows becomes ceil(rows / batch_size) batches.
    """
    if tcfg.shuffle_buffer > WINDOW_SHUFFLE_ABOVE:
        yield from _windowed_batches(shard, tcfg, collate, seed)
        return
    shuffle = dict(local_shuffle_buffer_size=tcfg.shuffle_buffer or None,
                   local_shuffle_seed=seed if tcfg.shuffle_buffer else None)
    if tcfg.length_buckets <= 1:
        yield from shard.iter_torch_batches(batch_size=tcfg.batch_size, collate_fn=collate, **shuffle)
        return
    rng = np.random.default_rng(seed)
    for big in shard.iter_batches(batch_size=tcfg.batch_size * tcfg.length_buckets, batch_format="numpy", **shuffle):
        for batch in length_buckets(big, tcfg.batch_size, rng):
            yield collate(batch)


def _die_after_first_step(batches, run: RunDir, marker: str, facts: dict):
    """Test hook (``train.fail_rank``): yield the first batch, then SIGKILL this worker when
    the loop asks for the second, i.e. after one finished step. The marker file makes it fire
    once per run, so the restarted worker group trains on. Wraps the batch iterator, so the
    step loop itself carries no fault-injection check."""
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return
    yield first
    if not run.exists(marker):
        run.write_json(marker, {**facts, "pid": os.getpid()})
        log.warning("fault injection: SIGKILL to own pid %d", os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
    yield from it


def train_loop_per_worker(config: dict) -> None:
    import deepspeed
    import ray.train

    t_start = time.perf_counter()
    _worker_logging()
    tcfg: TrainConfig = config["train"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    run = RunDir(config["run_uri"])
    run_name = config["run_name"]  # train/<run_name>/ holds metrics.jsonl (the model's name by default)
    torch.manual_seed(config["seed"] + rank)
    np.random.seed(config["seed"] + rank)
    if not tcfg.use_gpu:
        # One intra-op thread per CPU the worker holds (1 worker x 2 CPUs beats 2 x 1 on 2 cores).
        torch.set_num_threads(max(1, int(tcfg.resources_per_worker.get("CPU", 1))))

    log.info("rank %d allocator: %s", rank, _allocator())
    catalog, features = load_inputs(run, config["with_features"])
    from semacdr_dist.model import build_model

    model = build_model(config["model"], catalog, features)
    del features  # the model holds its own (frozen) copy
    precision = _agreed_precision(tcfg)
    if precision == "bf16":
        # DeepSpeed casts parameters only; the frozen feature buffers must match the adapters'
        # dtype (and take half the memory).
        model.to(torch.bfloat16)
    item_domain = torch.as_tensor(catalog.item_domain, dtype=torch.long)
    engine, _, _, _ = deepspeed.initialize(
        model=_LossModule(model),
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config={**config["deepspeed"], "bf16": {"enabled": precision == "bf16"}},
    )
    device = engine.device
    state: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": -1, "bad_epochs": 0, "stopped": False}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        # Ray registers a reported checkpoint asynchronously: a group that dies right after
        # a report (a worker restart, a killed driver) can have a whole checkpoint on disk
        # that get_checkpoint() does not return yet. Then: our newest complete one, else a
        # warm start from another run.
        found = latest_complete_checkpoint(run, run_name, world, tcfg.zero_stage) or config.get("resume_from")
        checkpoint = ray.train.Checkpoint(found) if found else None
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            _, client = engine.load_checkpoint(d, tag=DS_TAG)
        state.update({k: client[k] for k in state if k in client})
        log.info("rank %d: resumed from %s at epoch %d", rank, checkpoint.path, state["epoch"])

    start_epoch = state["epoch"]  # > 0 after a restart: recorded so resumption is visible
    if rank == 0:
        log.info("%s: model + DeepSpeed (ZeRO-%d, %s) ready in %.1f s, starting at epoch %d", run_name,
                 tcfg.zero_stage, precision, time.perf_counter() - t_start, state["epoch"])
    valid_batches, valid_weights = _valid_batches(config, catalog.domains, rank, world, device)
    shard = ray.train.get_dataset_shard("train")
    collate = SequenceCollate(config["max_len"], catalog.domains, device)
    monitor = tcfg.monitor
    while state["epoch"] < tcfg.epochs and not state["stopped"]:
        epoch = state["epoch"]
        # Seeded per epoch (not once per process) so a resumed epoch draws the same dropout
        # masks as an uninterrupted run: resume reproduces parameters exactly.
        torch.manual_seed(config["seed"] + 1000 * epoch + rank)
        engine.train()
        t0 = time.perf_counter()
        loss_sum, rows, steps = 0.0, 0, 0
        next_progress = t0 + PROGRESS_EVERY_S
        batches = _epoch_batches(shard, tcfg, collate, config["seed"] + 1000 * epoch + rank)
        if rank == tcfg.fail_rank and epoch == tcfg.fail_at_epoch:
            batches = _die_after_first_step(batches, run, f"train/{run_name}/_fault_injected_rank{rank}.json",
                                            {"epoch": epoch})
        for batch in batches:
            loss, _ = engine(batch)
            engine.backward(loss)
            engine.step()
            loss_sum += float(loss.detach().float()) * len(batch["target"])
            rows += len(batch["target"])
            steps += 1
            if rank == 0 and time.perf_counter() >= next_progress:
                # Long epochs (millions of rows) would otherwise be silent until validation.
                now = time.perf_counter()
                log.info("%s epoch %d: %d steps, %d rows on rank 0, %.0f seq/s per rank, loss %.4f",
                         run_name, epoch, steps, rows, rows / (now - t0), loss_sum / max(rows, 1))
                next_progress = now + PROGRESS_EVERY_S
        train_s = time.perf_counter() - t0
        totals = _all_reduce(torch.tensor([loss_sum, rows, train_s], dtype=torch.float64), device)
        # Peak and current RSS per rank, current split into anonymous (heap) and shared (Ray's
        # object store pages this process has touched): growth across epochs shows which one grows.
        rss = torch.zeros(4, world, dtype=torch.float64)
        rss[0, rank] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
        now = own_memory_bytes()
        rss[1:, rank] = torch.tensor([now["rss"], now["anon"], now["shmem"]], dtype=torch.float64) / 2**20
        rss = _all_reduce(rss, device)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "train/loss": totals[0].item() / max(totals[1].item(), 1.0),
            "train/sequences": int(totals[1].item()),
            # Rows of all ranks / mean rank time (ranks step in lockstep, so their times agree).
            "train/seq_per_s": totals[1].item() / max(totals[2].item() / world, 1e-9),
            "lr": float(engine.get_lr()[0]),
            "global_step": int(engine.global_steps),
            "start_epoch": start_epoch,
            "worker/peak_rss_mb": [round(float(x), 1) for x in rss[0]],
            "worker/rss_mb": [round(float(x), 1) for x in rss[1]],
            "worker/rss_anon_mb": [round(float(x), 1) for x in rss[2]],
            "worker/rss_shmem_mb": [round(float(x), 1) for x in rss[3]],
        }
        last = epoch + 1 >= tcfg.epochs
        if (epoch + 1) % tcfg.valid_every == 0 or last:
            engine.eval()
            t1 = time.perf_counter()
            with _gathered(engine, tcfg.zero_stage):
                sums = score_batches(model, valid_batches, item_domain, valid_weights)
            metrics.update(metrics_from_sums(_all_reduce(sums, device)))
            metrics["valid/seconds"] = time.perf_counter() - t1
            score = metrics[monitor]
            if state["best"] is None or score > state["best"]:
                state.update(best=score, best_epoch=epoch, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
                if tcfg.patience and state["bad_epochs"] >= tcfg.patience:
                    state["stopped"] = True
            metrics["best/" + monitor] = state["best"]
        else:
            # Ray ranks checkpoints by `monitor`; an epoch without validation must not win.
            metrics[monitor] = -1.0
        state["epoch"] = epoch + 1
        metrics["stopped"] = state["stopped"]
        # The convergence record: the best epoch so far and, on the last epoch, why it was the last.
        metrics["best_epoch"] = state["best_epoch"]
        if state["stopped"] or last:
            metrics["stopped_by"] = "patience" if state["stopped"] else "cap"
        _report(engine, model, metrics, state, tcfg.zero_stage, rank)
        if rank == 0:
            append_metrics(run, run_name, metrics)
            log.info("%s epoch %d: %s", run_name, epoch, _fmt(metrics))
    if rank == 0:
        log.info("%s: %s after epoch %d (best %s=%s at epoch %d)", run_name,
                 "early stop (patience)" if state["stopped"] else "stopped at the epoch cap",
                 state["epoch"] - 1, monitor, state["best"], state["best_epoch"])


def _report(engine, model, metrics: dict, state: dict, stage: int, rank: int) -> None:
    import ray.train

    with tempfile.TemporaryDirectory(prefix="semacdr-ckpt-") as tmp:
        engine.save_checkpoint(tmp, tag=DS_TAG, client_state=dict(state))
        with _gathered(engine, stage):
            if rank == 0:
                save_params(model, tmp)
        if rank == 0:
            write_state(tmp, {**state, "metrics": metrics})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _fmt(metrics: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
