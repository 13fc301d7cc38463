"""benchmarks/quality.py's table: mean ± sd over seeds, ratios, and the verdict on the targets."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import quality  # noqa: E402


def test_verdicts_say_met_or_by_how_much_short():
    ratios = {"test/food/ndcg@10": 1.2, "test/kitchen/ndcg@10": 1.035, "test/cold/ndcg@10": 1.3, "test/ndcg@10": 2.0}
    lines = quality.target_verdicts(ratios, ["food", "kitchen"])
    assert lines == [
        "food/ndcg@10: 1.200 vs 1.15 — met",
        "kitchen/ndcg@10: 1.035 vs 1.15 — short by 0.115 (10% of the goal)",
        "cold/ndcg@10: 1.300 vs 1.3 — met",
    ]


def test_markdown_table_has_mean_sd_ratios_and_command():
    rows = {"semacdr": [{"test/ndcg@10": 0.3, "test/food/ndcg@10": 0.2}, {"test/ndcg@10": 0.5, "test/food/ndcg@10": 0.4}],
            "sasrec": [{"test/ndcg@10": 0.2, "test/food/ndcg@10": 0.2}, {"test/ndcg@10": 0.2, "test/food/ndcg@10": 0.2}]}
    cols = ["test/ndcg@10", "test/food/ndcg@10"]
    table = {v: {c: dict(zip(("mean", "sd"), quality.mean_sd([r[c] for r in rs]), strict=True)) for c in cols}
             for v, rs in rows.items()}
    ratios = {c: table["semacdr"][c]["mean"] / table["sasrec"][c]["mean"] for c in cols}
    md = quality.markdown({"command": "python benchmarks/quality.py", "data": "food_kitchen", "seeds": [0, 1],
                           "machine": "x86_64, 2 cores", "seconds": 60.0, "columns": cols, "table": table,
                           "ratios": ratios, "domains": ["food"], "runs": rows,
                           "protocol": {"loss": "sampled", "epochs": 1},
                           "train_seconds": {"semacdr": [60.0, 180.0], "sasrec": []},
                           "strongest_baseline": "sasrec", "vs_strongest": ratios,
                           "baselines_not_finished": ["llm4cdsr"]})
    assert "Command: `python benchmarks/quality.py`" in md
    assert "**Provisional**: strongest among the baselines that finished; llm4cdsr has no finished run yet." in md
    assert "| semacdr | 2 | 0.4000 ± 0.1414 | 0.3000 ± 0.1414 | 2.0 |" in md
    assert "| sasrec | 2 | 0.2000 ± 0.0000 | 0.2000 ± 0.0000 | – |" in md
    assert "Training, every variant: loss sampled, epochs 1." in md
    assert "- test/ndcg@10: 2.000" in md and "food/ndcg@10: 1.500 vs 1.15 — met" in md


def test_run_order_is_headline_models_then_ablations_seed_by_seed():
    order = quality.run_order(["semacdr", "sasrec", "semacdr-no_gate", "semacdr-content_only"], [0, 1])
    assert order == [("semacdr", 0), ("sasrec", 0), ("semacdr", 1), ("sasrec", 1),
                     ("semacdr-no_gate", 0), ("semacdr-content_only", 0),
                     ("semacdr-no_gate", 1), ("semacdr-content_only", 1)]


def test_strongest_verdicts_cover_overall_domains_and_cold():
    ratios = {"test/ndcg@10": 1.2, "test/hr@10": 1.05, "test/food/ndcg@10": 0.9, "test/cold/hr@10": 1.0}
    lines = quality.strongest_verdicts(ratios, ["food"])
    assert lines[0] == "ndcg@10: 1.200 vs 1.1 — met"
    assert lines[1].startswith("hr@10: 1.050 vs 1.1 — NOT met, short by 0.050")
    assert "food/ndcg@10: 0.900 vs 1.0 — NOT met" in lines[2]
    assert lines[3] == "cold/hr@10: 1.000 vs 1.0 — met"


def test_markdown_flags_cap_stopped_runs_and_shows_gate_and_published_999():
    table = {"semacdr": {"test/ndcg@10": {"mean": 0.1, "sd": 0.0}, "gate/cold/source": {"mean": 0.5, "sd": 0},
                         "test/sampled999/food/hr@10": {"mean": 0.3, "sd": 0.0}}}
    md = quality.markdown({"command": "q", "data": "food_kitchen", "seeds": [0], "machine": "m", "seconds": 1.0,
                           "columns": ["test/ndcg@10", "gate/cold/source", "test/sampled999/food/hr@10"],
                           "table": table, "runs": {"semacdr": [{}]}, "published_999": quality.PUBLISHED_999,
                           "convergence": {"semacdr": [{"seed": 0, "epochs_run": 50, "best_epoch": 48,
                                                        "stopped_by": "cap", "minutes": 3.0,
                                                        "machine": quality.machine_line(
                                                            {"cpu_model": "Xeon", "cores": 2, "flags": ["avx2"]})}]}})
    assert "| 50 (48) **cap** |" in md and "may not have converged" in md
    assert "- Xeon, 2 cores, flags avx2: semacdr s0" in md
    assert "- semacdr: cold 0.500 / nan / nan" in md
    assert "| ABXI (published) | 0.3243 | 0.1971 | 0.2438 | 0.1427 |" in md
    assert "| semacdr (ours) | 0.3000 | – | – | – |" in md


def test_markdown_lists_unfinished_runs_outside_the_table():
    md = quality.markdown({"command": "q", "data": "food_kitchen", "seeds": [0], "machine": "m", "seconds": 1.0,
                           "columns": [], "table": {}, "unfinished": [
                               {"variant": "semacdr", "seed": 0, "epochs_run": 3, "best_epoch": 2,
                                "valid/ndcg@10": 0.05, "valid/hr@10": 0.1, "epoch_minutes": 20.5,
                                "valid_curve": [0.01, 0.04, 0.05]}]})
    assert "| semacdr | 0 | 3 | 0.0500 (2) | 0.1000 | 0.0100, 0.0400, 0.0500 | 20.5 |" in md
    assert "not in the table" in md and "No run has finished" in md


def test_finished_run_record_round_trips_and_feeds_the_tuning_record(tmp_path, monkeypatch):
    """A finished run is committed as one JSON; a later sitting reads it instead of retraining."""
    from semacdr_dist.rundir import RunDir
    from semacdr_dist.train.state import append_metrics

    run = RunDir(str(tmp_path / "run"))
    for epoch, score in enumerate([0.05, 0.07, 0.06]):
        append_metrics(run, "semacdr", {"epoch": epoch, "valid/ndcg@10": score, "valid/hr@10": 2 * score,
                                        "train/sequences": 1000, "train/seq_per_s": 100.0})
    run.mark_done("train/semacdr", {"seconds": 120.0, "epochs_run": 3, "best_epoch": 1, "stopped_by": "patience"})
    monkeypatch.setattr(quality, "RECORDS", tmp_path / "records")
    path = quality.record_path("food_kitchen", "seed0", "semacdr")
    assert path == tmp_path / "records" / "food_kitchen" / "seed0" / "semacdr.json"
    assert quality.load_record(path, evaluated=False) is None
    quality.save_record(run, "semacdr", path, evaluated=False)
    saved = quality.load_record(path, evaluated=False)
    assert saved["train"]["best_epoch"] == 1 and len(saved["metrics"]) == 3
    # Not evaluated: not a table run yet.
    assert quality.load_record(path, evaluated=True) is None
    # The tuning record reads the committed copy even when the run directory is gone.
    record = quality.tuning_record(RunDir(str(tmp_path / "gone")), "semacdr", saved=saved)
    assert record["finished"] and record["valid/ndcg@10"] == 0.07 and record["best_epoch"] == 1
    assert record["minutes"] == 2.0 and record["valid_curve"] == [0.05, 0.07, 0.06]


def test_a_run_finished_over_two_sittings_counts_both_and_an_unfinished_one_reads_its_carry(tmp_path):
    from semacdr_dist.rundir import RunDir
    from semacdr_dist.train.state import append_metrics

    run = RunDir(str(tmp_path / "run"))
    for epoch, score in enumerate([0.05, 0.07, 0.06]):
        append_metrics(run, "llm4cdsr", {"epoch": epoch, "valid/ndcg@10": score, "valid/hr@10": 2 * score,
                                         "train/sequences": 1000, "train/seq_per_s": 100.0})
    run.mark_done("train/llm4cdsr", {"seconds": 60.0, "epochs_run": 3, "best_epoch": 1, "stopped_by": "patience"})
    earlier = {"seconds": 540.0, "sittings": 1, "machines": [{"cpu_model": "another CPU"}]}
    record = quality.save_record(run, "llm4cdsr", tmp_path / "r.json", evaluated=False, before=earlier)
    assert record["train"]["seconds"] == 600.0 and record["train"]["seconds_this_sitting"] == 60.0
    assert record["train"]["sittings"] == 2 and record["earlier_machines"] == earlier["machines"]
    assert quality.tuning_record(run, "llm4cdsr", saved=record)["minutes"] == 10.0

    # A new sitting before the run resumed: no run directory, only the committed carry.
    carry = tmp_path / "carry"
    carry.mkdir()
    (carry / "metrics.jsonl").write_bytes(run.read_bytes("train/llm4cdsr/metrics.jsonl"))
    unfinished = quality.tuning_record(RunDir(str(tmp_path / "gone")), "llm4cdsr", carry=carry)
    assert not unfinished["finished"] and unfinished["stopped_by"] == "unfinished"
    assert unfinished["valid_curve"] == [0.05, 0.07, 0.06] and unfinished["best_epoch"] == 1
