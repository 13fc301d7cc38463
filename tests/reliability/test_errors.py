"""Defect 7: one line naming the key or file, the value and the rule; --verbose shows the traceback;
every config value checked at load time."""

from __future__ import annotations

import gzip
import json

import pytest

from semacdr_dist.config import load_config
from semacdr_dist.data.config import DataConfig, Source
from semacdr_dist.errors import ConfigError

from .conftest import cli, error_lines


@pytest.mark.parametrize(("override", "expected"), [
    ("data.max_history=-5", "data.max_history=-5: must be >= 1"),
    ("llm.model=nosuch", "llm.model='nosuch': not a packaged model (smollm2-135m-instruct)"),
    ("encoder.model=nosuch", "encoder.model='nosuch': not a packaged model (all-MiniLM-L6-v2"),
    ("llm.top_p=0", "llm.top_p=0.0: must be within (0, 1]"),
    ("train.lr=-0.1", "train.lr=-0.1: must be >= 0"),
    ("data.synthetic.cold_start_share=1.5", "must be within [0, 1]"),
])
def test_bad_values_are_rejected_at_load_time(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert expected in str(err.value)


def test_string_switches_built_in_python_are_checked():
    """Hydra refuses a bad choice at composition; a dataclass built in Python checks it too."""
    with pytest.raises(ConfigError, match=r"data.on_bad_rows='skip': must be one of error, reject"):
        DataConfig(on_bad_rows="skip")
    assert DataConfig(source="tabular").source is Source.tabular


@pytest.mark.parametrize(("args", "expected"), [
    (["prepare", "data.max_history=-5"], "error: data.max_history=-5: must be >= 1"),
    (["semantics", "llm.model=nosuch"], "error: llm.model='nosuch': not a packaged model"),
    (["config", "data.max_history=abc"], "data.max_history"),
    (["config", "train.epochz=3"], "train.epochz"),
    (["config", "data.on_bad_rows=skip"], "data.on_bad_rows: Invalid value 'skip', expected one of [error, reject]"),
])
def test_cli_prints_one_line(args, expected, tmp_path):
    proc = cli(*args, f"run_dir={tmp_path / 'run'}", timeout=120)
    lines = error_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_verbose_and_hydra_full_error_show_the_traceback(tmp_path):
    for extra, env in ((["--verbose"], None), ([], {"HYDRA_FULL_ERROR": "1"})):
        proc = cli("config", "data.max_history=-5", *extra, timeout=120, env=env)
        assert proc.returncode != 0 and "Traceback" in proc.stderr and "data.max_history" in proc.stderr


def test_truncated_gz_names_the_file_in_one_line(ray_local, tmp_path):
    reviews = tmp_path / "reviews.jsonl.gz"
    lines = b"".join(json.dumps({"user_id": f"u{i}", "parent_asin": "a1", "timestamp": i}).encode() + b"\n"
                     for i in range(5000))
    reviews.write_bytes(gzip.compress(lines)[:-200])
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps({"parent_asin": "a1", "title": "A pan"}) + "\n")
    doms = ",".join(f"{{name:{d},reviews:'{reviews}',metadata:'{meta}'}}" for d in ("a", "b"))
    proc = cli("prepare", "data=amazon", f"data.domains=[{doms}]", "data.k_core=0", f"run_dir={tmp_path / 'run'}")
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert f"{reviews}: truncated or corrupt compressed file" in lines[0]
    assert not list((tmp_path / "run").glob("*/part-*.parquet"))  # no partial outputs left
