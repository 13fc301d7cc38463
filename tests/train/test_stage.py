"""run_train without DeepSpeed: the popularity baseline, skipping/forcing, missing inputs."""

from __future__ import annotations

import pytest

from semacdr_dist.config import Config, model_configs
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.pipeline import train_config
from semacdr_dist.train.config import TrainConfig
from semacdr_dist.train.stage import fit_deepspeed, run_train
from semacdr_dist.train.state import read_metrics


def test_popularity_stage_exports_skips_and_forces(tmp_path, make_run):
    from semacdr_dist.model.export import load_export

    run = make_run(tmp_path)
    cfg = Config(run_dir=run.uri, model=ModelConfig(name="semacdr", max_len=12))
    summary = run_train(train_config(cfg, "pop"), run)  # cfg.model is semacdr: pop comes from configs/model/pop.yaml
    assert run.is_done("train/pop")
    m = summary["best_metrics"]
    assert 0 < m["valid/ndcg@10"] < 1 and m["valid/count"] == 240
    assert [r["epoch"] for r in read_metrics(run, "pop")] == [0]
    model, items = load_export(summary["export"])
    assert items.shape[0] == 120
    # done: skipped (the recorded summary comes back, nothing is recomputed)
    run.write_json("train/pop/_SUCCESS.json", {**summary, "marker": 1})
    assert run_train(train_config(cfg, "pop"), run)["marker"] == 1
    forced = run_train(train_config(Config(run_dir=run.uri, force=True, model=cfg.model), "pop"), run)
    assert "marker" not in forced and forced["best_metrics"] == pytest.approx(m)


def test_model_configs_of_baselines_come_from_their_presets():
    cfg = Config(model=ModelConfig(name="semacdr", max_len=17))
    assert model_configs(cfg, ["semacdr"])["semacdr"] is cfg.model
    assert train_config(cfg, "semacdr").model is cfg.model
    sasrec = model_configs(cfg, ["sasrec"])["sasrec"]
    assert sasrec.name == "sasrec" and sasrec.max_len == 17


def test_feature_model_without_features_fails_clearly(tmp_path, make_run):
    run = make_run(tmp_path)
    run.delete("features")
    with pytest.raises(FileNotFoundError, match="needs frozen item features.*semantics stage"):
        fit_deepspeed(run, ModelConfig(name="semacdr", max_len=12), TrainConfig())


def test_missing_sequences_fails_clearly(tmp_path, make_run):
    run = make_run(tmp_path)
    run.delete("sequences", "train")
    with pytest.raises(FileNotFoundError, match="sequences/train.*prepare"):
        fit_deepspeed(run, ModelConfig(name="sasrec", max_len=12), TrainConfig())


def test_convergence_record_from_metrics():
    from semacdr_dist.train.stage import convergence

    recs = [{"epoch": 0, "valid/ndcg@10": 0.1}, {"epoch": 1, "valid/ndcg@10": 0.3},
            {"epoch": 2, "valid/ndcg@10": 0.3}, {"epoch": 3, "valid/ndcg@10": 0.2, "stopped": True}]
    assert convergence(recs, "valid/ndcg@10") == {"epochs_run": 4, "best_epoch": 1, "stopped_by": "patience"}
    recs[-1]["stopped"] = False
    assert convergence(recs, "valid/ndcg@10")["stopped_by"] == "cap"
