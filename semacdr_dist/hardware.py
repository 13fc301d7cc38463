"""What the machine can do, read where the code runs: CPU model and flags, cores, dtype choice.

`dtype: auto` (the default of every CPU preset) resolves here, on the machine
that runs the engine (a Ray actor or train worker, not the driver: on a cluster
they differ). bfloat16 is chosen on a CPU only where it is native
(``avx512_bf16`` or AMX): without it the kernels emulate bf16 and run at about
half the float32 speed (raw vLLM, SmolLM2-135M, 1 thread on a Xeon with
AVX-512 but no avx512_bf16: bf16 29.7 vs fp32 57.7 generated tok/s). On a GPU
the model keeps its own dtype. An explicit dtype always wins.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

# Flags that make bf16 matmuls native on x86 (Cooper Lake / Sapphire Rapids and newer).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags named next to every figure: what decides the speed of our CPU kernels.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


@dataclass(frozen=True)
class CPUInfo:
    model: str
    cores: int  # CPUs this process may run on (affinity), not the host's
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        return any(f in self.flags for f in BF16_FLAGS)

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags

    def describe(self) -> str:
        """One line to print beside a figure: model, cores, bf16/AMX yes or no."""
        return (f"{self.model}, {self.cores} cores, native bf16 {'yes' if self.native_bf16 else 'no'}, "
                f"AMX {'yes' if self.amx else 'no'}")


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    """The CPU of this process's machine (Linux: /proc/cpuinfo; elsewhere no flags are known)."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features"):  # x86 / arm64
                    flags = frozenset(value.split())
                if model and flags and key == "":  # end of the first processor block
                    break
    except OSError:
        pass
    return CPUInfo(model=model, cores=_available_cores(), flags=flags)


def machine_summary(dtype: str | None = None) -> dict:
    """What every benchmark JSON records: CPU model, flags, cores, bf16/AMX, and the dtype used."""
    cpu = cpu_info()
    out = {
        "cpu_model": cpu.model,
        "cores": cpu.cores,
        "native_bf16": cpu.native_bf16,
        "amx": cpu.amx,
        "flags": [f for f in REPORTED_FLAGS if f in cpu.flags],
        "arch": platform.machine(),
        "python": platform.python_version(),
        "describe": cpu.describe(),
    }
    if dtype is not None:
        out["dtype"] = dtype
    return out


def resolve_dtype(requested: str, on_gpu: bool, cpu: CPUInfo | None = None) -> tuple[str, str]:
    """(dtype, reason) for an engine: ``requested`` unless it is "auto".

    "auto" on a GPU returns "auto" (vLLM and transformers then keep the model's own
    dtype); on a CPU bfloat16 where bf16 is native, float32 elsewhere.
    """
    if requested != "auto":
        return requested, f"{requested} set explicitly"
    if on_gpu:
        return "auto", "GPU: the model's own dtype"
    cpu = cpu or cpu_info()
    if cpu.native_bf16:
        return "bfloat16", f"CPU has native bf16 ({', '.join(f for f in BF16_FLAGS if f in cpu.flags)})"
    return "float32", "CPU has no native bf16 (no avx512_bf16, no AMX): bf16 would be emulated, ~2x slower"


def resolve_precision(requested: str, use_gpu: bool, cpu: CPUInfo | None = None) -> tuple[str, str]:
    """(fp32 | bf16, reason) for training: the rule of :func:`resolve_dtype` in DeepSpeed's words."""
    if requested != "auto":
        return requested, f"{requested} set explicitly"
    if use_gpu:
        return "bf16", "GPU: bf16 mixed precision"
    dtype, reason = resolve_dtype("auto", False, cpu)
    return ("bf16" if dtype == "bfloat16" else "fp32"), reason


def torch_dtype(name: str):
    """The torch dtype of a resolved name ("auto" -> None: let the loader keep the model's)."""
    import torch

    return None if name == "auto" else getattr(torch, name)
