"""Defect 3: prepare deletes only what it wrote; a foreign non-empty directory is refused."""

from __future__ import annotations

import pytest

from semacdr_dist.data.prepare import run_prepare
from semacdr_dist.manifest import NotARunDir
from semacdr_dist.pipeline import prepare_config, run_pipeline
from semacdr_dist.rundir import RunDir

from .conftest import cli, error_lines, small_cfg


def test_prepare_refuses_a_foreign_non_empty_directory(tmp_path):
    """The issue's reproduction: `mkdir -p d/items; echo x > d/items/notes.txt; prepare run_dir=d`."""
    d = tmp_path / "d"
    (d / "items").mkdir(parents=True)
    (d / "items" / "notes.txt").write_text("x")
    with pytest.raises(NotARunDir, match=r"not a semacdr-dist run directory"):
        run_pipeline(small_cfg(d), stages=("prepare",))  # refused before Ray starts
    with pytest.raises(NotARunDir):
        run_prepare(prepare_config(small_cfg(d)), RunDir(d))
    assert (d / "items" / "notes.txt").read_text() == "x"
    assert not (d / "config.yaml").exists()

    proc = cli("prepare", "data=synthetic_small", f"run_dir={d}")
    assert proc.returncode == 1 and len(error_lines(proc)) == 1, proc.stderr
    assert "is not empty (items)" in proc.stderr and (d / "items" / "notes.txt").exists()


def test_force_redo_keeps_files_it_did_not_write(run_copy):
    """Inside a real run directory, force=true replaces prepare's shards and nothing else."""
    (run_copy / "items" / "notes.txt").write_text("mine")
    (run_copy / "my-analysis.csv").write_text("a,b\n")
    before = sorted(p.name for p in (run_copy / "sequences" / "test").iterdir())
    cfg = small_cfg(run_copy, "force=true")
    run_prepare(prepare_config(cfg), RunDir(run_copy))
    assert (run_copy / "items" / "notes.txt").read_text() == "mine"
    assert (run_copy / "my-analysis.csv").exists()
    assert sorted(p.name for p in (run_copy / "sequences" / "test").iterdir()) == before
    assert not (run_copy / "_replaced").exists() or not any((run_copy / "_replaced").iterdir())
