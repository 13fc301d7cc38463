"""Ray Train + DeepSpeed on 2 local CPU workers: quality, resume, failures, export."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from semacdr_dist.data.batch import collate_rows
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.train.checkpoint import PARAMS_FILE, read_state
from semacdr_dist.train.config import TrainConfig
from semacdr_dist.train.stage import fit_deepspeed, fit_popularity
from semacdr_dist.train.state import load_inputs, read_metrics

MAX_LEN = 12


def semacdr_cfg() -> ModelConfig:
    return ModelConfig(name="semacdr", hidden_dim=32, num_layers=1, max_len=MAX_LEN, dropout=0.1,
                       adapter_hidden=0)


def train_cfg(**kw) -> TrainConfig:
    base = dict(num_workers=2, zero_stage=1, epochs=2, batch_size=64, lr=3e-3, warmup=5, patience=0,
                keep_best_k=3, shuffle_buffer=256, max_failures=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def quiet_data(ray_local):
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray_local


@pytest.fixture(scope="module")
def zero1(quiet_data, tmp_path_factory, make_run):
    run = make_run(tmp_path_factory.mktemp("zero1"))
    # fp32 on every CPU: test_export_loads_back... replays the train-time valid scores from the
    # (fp32) export to 1e-6, which bf16 training (`auto` on CPUs with native bf16) cannot match.
    summary = fit_deepspeed(run, semacdr_cfg(), train_cfg(zero_stage=1, precision="fp32"))
    return run, summary


@pytest.fixture(scope="module")
def pop_ndcg(tiny_run_dir):
    return fit_popularity(tiny_run_dir, ModelConfig(name="pop", max_len=MAX_LEN))["best_metrics"]["valid/ndcg@10"]


def test_zero1_semacdr_beats_popularity(zero1, pop_ndcg):
    run, summary = zero1
    records = read_metrics(run, "semacdr")
    assert [r["epoch"] for r in records] == [0, 1]
    for r in records:
        assert r["train/seq_per_s"] > 0 and r["valid/count"] == 240 and r["train/loss"] > 0
    best = summary["best_metrics"]["valid/ndcg@10"]
    assert best == max(r["valid/ndcg@10"] for r in records)
    assert best > pop_ndcg + 0.05, (best, pop_ndcg)
    # the convergence record: no patience (0), so the cap of 2 epochs ended the run
    assert summary["epochs_run"] == 2 and summary["stopped_by"] == "cap"
    assert records[summary["best_epoch"]]["valid/ndcg@10"] == best
    assert records[-1]["stopped_by"] == "cap" and "stopped_by" not in records[0]
    assert run.exists("train", "semacdr", "deepspeed.json")
    base = run.path("checkpoints", "semacdr")
    ckpts = [d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))]
    assert len(ckpts) == 2  # one per epoch (keep_best_k=3)
    # every rank wrote its ZeRO-1 optimizer partition into the reported checkpoint
    ds_files = os.listdir(os.path.join(summary["best_checkpoint"], "ds"))
    assert sum("optim_states" in f for f in ds_files) == 2, ds_files


def test_export_loads_back_and_reproduces_scores(zero1):
    from semacdr_dist.model import build_model
    from semacdr_dist.model.export import load_export
    from semacdr_dist.train.checkpoint import load_params
    from semacdr_dist.train.scoring import metrics_from_sums, score_batches

    run, summary = zero1
    catalog, features = load_inputs(run, True)
    model = build_model(semacdr_cfg(), catalog, features)
    load_params(model, summary["best_checkpoint"])
    model.eval()
    exported, item_vectors = load_export(summary["export"])
    exported.eval()
    batch = collate_rows(run.read_table("sequences", "valid"), MAX_LEN, catalog.domains)
    with torch.no_grad():
        expect = model.full_sort_predict(batch)
        got = exported.full_sort_predict(batch)
        assert torch.allclose(model.item_vectors(), item_vectors, atol=1e-5)
    assert torch.allclose(got, expect, atol=1e-4)
    item_domain = torch.as_tensor(catalog.item_domain, dtype=torch.long)
    again = metrics_from_sums(score_batches(exported, [batch], item_domain))
    assert again["valid/ndcg@10"] == pytest.approx(summary["best_metrics"]["valid/ndcg@10"], abs=1e-6)


def _checkpoint_of_epoch(run, name: str, epoch: int) -> str:
    base = run.path("checkpoints", name)
    for d in sorted(os.listdir(base)):
        if d.startswith("checkpoint_") and read_state(os.path.join(base, d))["epoch"] == epoch + 1:
            return os.path.join(base, d)
    raise AssertionError(f"no checkpoint of epoch {epoch} under {base}")


def test_resume_from_checkpoint_gives_identical_parameters(zero1):
    """Resuming epoch 1 from the epoch-0 checkpoint reproduces the uninterrupted run's parameters."""
    from semacdr_dist.train.trainer import build_trainer

    run, _ = zero1
    saved = _checkpoint_of_epoch(run, "semacdr", 0)
    trainer = build_trainer(run, semacdr_cfg(), train_cfg(zero_stage=1, precision="fp32"), name="semacdr_resumed",
                            resume_from=saved)
    result = trainer.fit()
    assert result.error is None
    records = read_metrics(run, "semacdr_resumed")
    assert [(r["epoch"], r["start_epoch"]) for r in records] == [(1, 1)]
    uninterrupted = load_file(os.path.join(_checkpoint_of_epoch(run, "semacdr", 1), PARAMS_FILE))
    resumed = load_file(os.path.join(result.checkpoint.path, PARAMS_FILE))
    assert uninterrupted.keys() == resumed.keys()
    for k in uninterrupted:
        assert torch.equal(uninterrupted[k], resumed[k]), k


def test_carry_moves_an_unfinished_run_to_a_fresh_directory_and_resumes_exactly(zero1, make_run, tmp_path):
    """A run stopped after epoch 0, carried (safetensors + JSON) into a new run directory,
    finishes with the uninterrupted run's parameters and best checkpoint."""
    import shutil

    from semacdr_dist.train.carry import CarryMismatch, restore_carry, save_carry
    from semacdr_dist.train.config import TrainStageConfig

    run, summary = zero1
    model, train = semacdr_cfg(), train_cfg(zero_stage=1, precision="fp32")
    stage_cfg = TrainStageConfig(model=model, train=train)
    # The sitting that stopped: only epoch 0's checkpoint and record.
    stopped = make_run(tmp_path / "stopped")
    epoch0 = _checkpoint_of_epoch(run, "semacdr", 0)
    shutil.copytree(epoch0, stopped.path("checkpoints", "semacdr", os.path.basename(epoch0)))
    stopped.write_bytes("train/semacdr/metrics.jsonl", run.read_bytes("train/semacdr/metrics.jsonl").splitlines(True)[0])
    carry = tmp_path / "carry"
    info = save_carry(stage_cfg, stopped, "semacdr", carry, train.monitor, train.num_workers, train.zero_stage)
    assert info["next_epoch"] == 1 and info["best_epoch"] == 0
    assert not list(carry.rglob("*.pt"))  # nothing pickled travels
    assert not (carry / "latest" / PARAMS_FILE).exists()  # its tensors are DeepSpeed's, stored once

    other = TrainStageConfig(model=model, train=train_cfg(zero_stage=1, precision="fp32", lr=1e-3))
    with pytest.raises(CarryMismatch, match="train_config_hash"):
        restore_carry(other, make_run(tmp_path / "other"), "semacdr", carry)

    fresh = make_run(tmp_path / "fresh")
    assert restore_carry(stage_cfg, fresh, "semacdr", carry)["latest"] == os.path.basename(epoch0)
    resumed = fit_deepspeed(fresh, model, train)
    records = read_metrics(fresh, "semacdr")
    assert [(r["epoch"], r["start_epoch"]) for r in records] == [(0, 0), (1, 1)]
    assert resumed["best_metrics"]["valid/ndcg@10"] == summary["best_metrics"]["valid/ndcg@10"]
    assert resumed["best_epoch"] == summary["best_epoch"]
    expect = load_file(os.path.join(_checkpoint_of_epoch(run, "semacdr", 1), PARAMS_FILE))
    got = load_file(os.path.join(_checkpoint_of_epoch(fresh, "semacdr", 1), PARAMS_FILE))
    assert expect.keys() == got.keys()
    for k in expect:
        assert torch.equal(expect[k], got[k]), k


@pytest.mark.slow
def test_zero3_semacdr_beats_popularity(quiet_data, tmp_path, pop_ndcg, make_run):
    run = make_run(tmp_path)
    summary = fit_deepspeed(run, semacdr_cfg(), train_cfg(zero_stage=3))
    assert summary["best_metrics"]["valid/ndcg@10"] > pop_ndcg + 0.05


@pytest.mark.slow
def test_zero2_bf16_semacdr_beats_popularity(quiet_data, tmp_path, pop_ndcg, make_run):
    run = make_run(tmp_path)
    summary = fit_deepspeed(run, semacdr_cfg(), train_cfg(zero_stage=2, precision="bf16"))
    assert summary["best_metrics"]["valid/ndcg@10"] > pop_ndcg + 0.05


@pytest.mark.slow
def test_worker_killed_mid_epoch_resumes_and_completes(quiet_data, tmp_path, make_run):
    """Rank 1 SIGKILLs itself after its first step of epoch 1; Ray restarts the group from the
    epoch-0 checkpoint (FailureConfig) and the run completes."""
    run = make_run(tmp_path)
    summary = fit_deepspeed(run, semacdr_cfg(), train_cfg(fail_rank=1, fail_at_epoch=1, max_failures=1))
    marker = run.read_json("train/semacdr/_fault_injected_rank1.json")
    assert marker["epoch"] == 1
    records = read_metrics(run, "semacdr")
    assert [(r["epoch"], r["start_epoch"]) for r in records] == [(0, 0), (1, 1)]
    assert summary["export"] and os.path.exists(os.path.join(summary["export"], "config.json"))


@pytest.mark.slow  # ~65 s; test_resume_from_checkpoint_gives_identical_parameters covers resume by default
def test_zero2_stage_rerun_after_failure_resumes_and_beats_popularity(quiet_data, tmp_path, make_run, pop_ndcg):
    """ZeRO-2 through `run_train`: rank 0 dies in epoch 1 with no retries left, so the stage
    fails; running the stage again resumes from the epoch-0 checkpoint (not from scratch),
    finishes, exports and beats popularity."""
    from semacdr_dist.train.config import TrainStageConfig
    from semacdr_dist.train.stage import run_train

    run = make_run(tmp_path)
    cfg = TrainStageConfig(model=semacdr_cfg(), train=train_cfg(zero_stage=2, fail_rank=0, fail_at_epoch=1))
    with pytest.raises(RuntimeError, match="training semacdr failed"):
        run_train(cfg, run)
    assert not run.is_done("train/semacdr")
    assert [r["epoch"] for r in read_metrics(run, "semacdr")] == [0]
    summary = run_train(cfg, run)
    records = read_metrics(run, "semacdr")
    assert [(r["epoch"], r["start_epoch"]) for r in records] == [(0, 0), (1, 1)]
    assert run.is_done("train/semacdr") and summary["epochs"] == 2
    assert summary["best_metrics"]["valid/ndcg@10"] > pop_ndcg + 0.05
    ds_files = os.listdir(os.path.join(summary["best_checkpoint"], "ds"))
    assert sum("optim_states" in f for f in ds_files) == 2, ds_files
    assert os.path.exists(os.path.join(summary["export"], "item_vectors.safetensors"))
    # finished: a third call is a no-op that returns the recorded summary
    assert run_train(cfg, run)["best_checkpoint"] == summary["best_checkpoint"]


DRIVER = r"""
import sys, ray
from semacdr_dist.runtime import engine_env
engine_env()
ray.init(address=sys.argv[1], logging_level="ERROR")
ray.data.DataContext.get_current().enable_progress_bars = False
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.rundir import RunDir
from semacdr_dist.train.config import TrainConfig, TrainStageConfig
from semacdr_dist.train.stage import run_train
import json
spec = json.loads(sys.argv[3])
cfg = TrainStageConfig(model=ModelConfig(**spec["model"]), train=TrainConfig(**spec["train"]))
run_train(cfg, RunDir(sys.argv[2]))
"""


@pytest.mark.slow
def test_driver_killed_then_stage_rerun_resumes(quiet_data, tmp_path, make_run):
    """SIGKILL the driver process after epoch 0 was reported; the stage run again resumes at epoch >= 1."""
    import dataclasses
    import json
    import signal
    import subprocess
    import sys
    import time

    import ray

    from semacdr_dist.train.config import TrainStageConfig
    from semacdr_dist.train.stage import run_train

    run = make_run(tmp_path / "run")
    model, train = semacdr_cfg(), train_cfg(epochs=4)
    spec = json.dumps({"model": dataclasses.asdict(model), "train": dataclasses.asdict(train)})
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, address, run.uri, spec])
    try:
        deadline = time.time() + 300
        # Kill once Ray Train's controller has registered a checkpoint (its snapshot lists one);
        # a report still in flight when the driver dies is lost, as in any crash.
        snapshot = run.path("checkpoints", "semacdr", "checkpoint_manager_snapshot.json")

        def registered() -> bool:
            return os.path.exists(snapshot) and "checkpoint_" in open(snapshot).read()

        while time.time() < deadline and not registered():
            assert proc.poll() is None, "driver exited before the first checkpoint was registered"
            time.sleep(0.2)
        assert registered(), "no checkpoint registered in 300 s"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = len(read_metrics(run, "semacdr"))
    assert killed_at < 4 and not run.is_done("train/semacdr")
    time.sleep(2)  # let Ray reap the dead driver's actors
    run_train(TrainStageConfig(model=model, train=train), run)
    records = read_metrics(run, "semacdr")
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert records[-1]["start_epoch"] >= 1  # resumed, not restarted
    assert run.is_done("train/semacdr")
