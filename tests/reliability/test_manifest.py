"""Defect 2: stages verify their inputs against the producer's manifest; force=true keeps the old
outputs until the new ones are complete; a finished stage rerun under another config is refused."""

from __future__ import annotations

import gzip
import json

import pytest

from semacdr_dist.data.config import AmazonDomainConfig
from semacdr_dist.data.prepare import run_prepare
from semacdr_dist.data.schemas import DataValidationError
from semacdr_dist.evaluate.stage import run_evaluate
from semacdr_dist.manifest import MANIFEST, ConfigChanged, InputError, verify_inputs
from semacdr_dist.pipeline import evaluate_config, prepare_config, run_pipeline, train_config
from semacdr_dist.rundir import RunDir
from semacdr_dist.train.stage import run_train

from .conftest import small_cfg


def test_every_stage_writes_a_manifest(finished_run):
    run = RunDir(finished_run)
    prep = json.loads((finished_run / "prepare" / MANIFEST).read_text())
    stats = run.read_json("stats.json")
    seq_rows = sum(e["rows"] for f, e in prep["files"].items() if f.startswith("sequences/"))
    assert seq_rows == sum(stats["examples"].values())
    assert all(e["bytes"] > 0 for e in prep["files"].values()) and prep["config"]["data"]["max_history"] == 20
    for stage in ("train/pop", "eval/pop"):
        m = json.loads((finished_run / stage / MANIFEST).read_text())
        assert m["files"] and m["config_hash"]
    assert verify_inputs(run, "eval/pop") > 4


def test_missing_test_shard_stops_evaluate_naming_it(ray_local, run_copy):
    """The issue's reproduction: part-00003 of the test split deleted, `evaluate force=true`."""
    gone = run_copy / "sequences" / "test" / "part-00003.parquet"
    gone.unlink()
    cfg = small_cfg(run_copy, "force=true")
    with pytest.raises(InputError, match=r"sequences/test/part-00003\.parquet: missing; the prepare stage wrote it"):
        run_evaluate(evaluate_config(cfg), RunDir(run_copy), "pop")
    assert (run_copy / "eval" / "pop" / "metrics.json").exists()  # the previous evaluation stays


def test_truncated_train_shard_stops_train_before_force_deletes(ray_local, run_copy):
    shard = run_copy / "sequences" / "train" / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    export_before = sorted(p.name for p in (run_copy / "export" / "pop").iterdir())
    with pytest.raises(InputError, match=r"sequences/train/part-00001\.parquet: \d+ bytes, the prepare stage wrote"):
        run_train(train_config(small_cfg(run_copy, "force=true"), "pop"), RunDir(run_copy))
    assert sorted(p.name for p in (run_copy / "export" / "pop").iterdir()) == export_before
    assert (run_copy / "train" / "pop" / "_SUCCESS.json").exists()


def test_extra_shard_is_not_read_silently(ray_local, run_copy):
    src = run_copy / "sequences" / "test" / "part-00000.parquet"
    (run_copy / "sequences" / "test" / "part-00099.parquet").write_bytes(src.read_bytes())
    with pytest.raises(InputError, match=r"part-00099\.parquet: not written by the prepare stage"):
        run_evaluate(evaluate_config(small_cfg(run_copy, "force=true")), RunDir(run_copy), "pop")


def test_failed_force_redo_restores_the_previous_outputs(ray_local, run_copy, tmp_path):
    """force=true with an input that fails half-way (a truncated .gz): the old outputs come back whole."""
    reviews = tmp_path / "reviews.jsonl.gz"
    lines = b"".join(json.dumps({"user_id": f"u{i}", "parent_asin": "a1", "timestamp": i}).encode() + b"\n"
                     for i in range(5000))
    reviews.write_bytes(gzip.compress(lines)[:-200])
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps({"parent_asin": "a1", "title": "A pan"}) + "\n")
    before = {p.relative_to(run_copy): p.stat().st_size for p in run_copy.rglob("*") if p.is_file()}
    cfg = small_cfg(run_copy, "force=true")
    cfg.data.source = "amazon2023"
    cfg.data.domains = [AmazonDomainConfig(name=d, reviews=str(reviews), metadata=str(meta)) for d in ("a", "b")]
    with pytest.raises(DataValidationError, match=r"reviews\.jsonl\.gz: truncated or corrupt compressed file"):
        run_prepare(prepare_config(cfg), RunDir(run_copy))
    after = {p.relative_to(run_copy): p.stat().st_size for p in run_copy.rglob("*") if p.is_file()}
    after = {k: v for k, v in after.items() if not str(k).startswith(("_replaced", "_lease"))}
    assert after == before
    assert verify_inputs(RunDir(run_copy), "eval/pop") > 0


def test_changed_config_on_a_finished_stage_is_refused(run_copy):
    """The issue: a rerun logged "skipping" and rewrote config.yaml with values that no longer
    described the data. Now it is refused before anything is written."""
    config_before = (run_copy / "config.yaml").read_bytes()
    cfg = small_cfg(run_copy, "data.max_history=5")
    with pytest.raises(ConfigChanged, match=r"data\.max_history: 20 -> 5.*force=true"):
        run_pipeline(cfg, stages=("prepare",))
    with pytest.raises(ConfigChanged):  # a later stage alone cannot rewrite the data's config either
        run_pipeline(cfg, stages=("evaluate",))
    with pytest.raises(ConfigChanged):
        run_prepare(prepare_config(cfg), RunDir(run_copy))
    assert (run_copy / "config.yaml").read_bytes() == config_before
    # runtime-only keys (partitions, shards) are not a different stage
    from semacdr_dist.manifest import should_skip

    assert should_skip(small_cfg(run_copy, "data.num_partitions=7"), RunDir(run_copy), "prepare")
