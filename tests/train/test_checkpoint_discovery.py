"""Resuming from a checkpoint Ray had not registered yet: only a complete one counts."""

from __future__ import annotations

from semacdr_dist.rundir import RunDir
from semacdr_dist.train.checkpoint import latest_complete_checkpoint


def _checkpoint(root, name: str, ranks: int, state: bool = True) -> None:
    d = root / "checkpoints" / "semacdr" / name
    (d / "ds").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
    (d / "ds" / "mp_rank_00_model_states.pt").write_bytes(b"x")
    for r in range(ranks):
        (d / "ds" / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"x")
    if state:
        (d / "state.json").write_text("{}")


def test_newest_complete_checkpoint_wins(tmp_path):
    run = RunDir(tmp_path)
    assert latest_complete_checkpoint(run, "semacdr", 2, 1) is None
    _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-01.0", ranks=2)
    _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-02.0", ranks=1)  # rank 1 never uploaded
    _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-03.0", ranks=2, state=False)  # rank 0 cut off
    found = latest_complete_checkpoint(run, "semacdr", 2, 1)
    assert found is not None and found.endswith("checkpoint_2026-01-01_00-00-01.0")
    # ZeRO-0 keeps no optimizer shards per rank: the one-rank checkpoint is complete then.
    assert latest_complete_checkpoint(run, "semacdr", 2, 0).endswith("checkpoint_2026-01-01_00-00-02.0")
