"""dtype: auto and the engine layout follow the hardware; an explicit choice wins."""

from __future__ import annotations

import pytest

from semacdr_dist.hardware import (
    CPUInfo,
    cpu_info,
    machine_summary,
    resolve_dtype,
    resolve_precision,
)
from semacdr_dist.semantics.config import LLMConfig
from semacdr_dist.semantics.layout import GIB, engine_layout

NO_BF16 = CPUInfo("Xeon (AVX-512, VNNI)", 2, frozenset({"avx2", "avx512f", "avx512_vnni"}))
BF16 = CPUInfo("Xeon (Cooper Lake)", 2, frozenset({"avx2", "avx512f", "avx512_bf16"}))
AMX = CPUInfo("Xeon (Sapphire Rapids)", 8, frozenset({"avx512f", "amx_tile", "amx_bf16"}))


@pytest.mark.parametrize(
    ("cpu", "expected"), [(NO_BF16, "float32"), (BF16, "bfloat16"), (AMX, "bfloat16")]
)
def test_auto_dtype_is_bf16_only_where_native(cpu: CPUInfo, expected: str) -> None:
    dtype, reason = resolve_dtype("auto", on_gpu=False, cpu=cpu)
    assert dtype == expected
    assert ("no native bf16" in reason) == (expected == "float32")
    precision, _ = resolve_precision("auto", use_gpu=False, cpu=cpu)
    assert precision == ("bf16" if expected == "bfloat16" else "fp32")


def test_explicit_dtype_wins_and_gpu_keeps_the_models_dtype() -> None:
    assert resolve_dtype("bfloat16", on_gpu=False, cpu=NO_BF16)[0] == "bfloat16"
    assert resolve_dtype("float32", on_gpu=False, cpu=AMX)[0] == "float32"
    assert resolve_dtype("auto", on_gpu=True, cpu=NO_BF16)[0] == "auto"
    assert resolve_precision("fp32", use_gpu=True)[0] == "fp32"
    assert resolve_precision("auto", use_gpu=True)[0] == "bf16"


def test_this_machine_is_described_with_its_flags() -> None:
    info = cpu_info()
    assert info.cores >= 1 and info.model
    summary = machine_summary(dtype="float32")
    assert summary["native_bf16"] == info.native_bf16
    assert summary["dtype"] == "float32"
    assert ("native bf16 yes" in summary["describe"]) == info.native_bf16


def test_layout_one_single_thread_engine_per_real_core() -> None:
    cfg = LLMConfig(num_engines=None, omp_threads=None, batch_size=32)
    # A local Ray advertises 4 CPUs on 2 cores: the cores decide.
    lay = engine_layout(cfg, ray_cpus=4, host_cores=2, items=500)
    assert (lay.num_engines, lay.threads) == (2, 1)
    assert "2 host cores" in lay.reason
    # 16 cores, plenty of work: 16 engines.
    assert engine_layout(cfg, ray_cpus=16, host_cores=16, items=10_000).num_engines == 16
    # A multi-node cluster: Ray's CPUs.
    assert engine_layout(cfg, ray_cpus=64, host_cores=None, items=10**6).num_engines == 64


def test_layout_capped_by_work_and_memory_gives_spare_cores_as_threads() -> None:
    cfg = LLMConfig(num_engines=None, omp_threads=None, batch_size=32)
    few = engine_layout(cfg, ray_cpus=8, host_cores=8, items=40)  # 2 batches of work
    assert (few.num_engines, few.threads) == (2, 4)
    tight = engine_layout(cfg, ray_cpus=8, host_cores=8, items=10_000,
                          engine_bytes=3 * GIB, available_bytes=7 * GIB)
    assert (tight.num_engines, tight.threads) == (2, 4)
    assert "memory" in tight.reason


def test_layout_explicit_values_win_and_gpus_count_tp_groups() -> None:
    assert engine_layout(LLMConfig(num_engines=1, omp_threads=2), ray_cpus=4, host_cores=2).num_engines == 1
    assert engine_layout(LLMConfig(num_engines=None, omp_threads=2), ray_cpus=8, host_cores=8).num_engines == 4
    gpu = LLMConfig(num_engines=None, use_gpu=True, tensor_parallel_size=2)
    assert engine_layout(gpu, ray_cpus=32, host_cores=None, ray_gpus=8).num_engines == 4
