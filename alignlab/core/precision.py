"""Which precision trains fastest on this machine: what ``train.mixed_precision=auto`` resolves to.

bf16 autocast pays off only where the hardware multiplies bf16 natively: a CUDA GPU with bf16 support, or an
x86 CPU with AVX512-BF16 or AMX. Elsewhere (AVX2 or plain AVX-512 CPUs, most laptops and many cloud CPUs)
PyTorch emulates bf16 matrix products by converting to fp32 and back, which is several times slower than
fp32 itself, so there ``auto`` trains in fp32. The decision reads the hardware's capability flags, not a
timing, so it is the same on every run of a machine.

Example::

    >>> choice = fastest_precision("cpu")
    >>> choice.mixed_precision in ("bf16", "no") and bool(choice.reason)
    True
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path
from typing import NamedTuple

import torch

log = logging.getLogger("alignlab")

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo names of the x86 instructions that compute on bf16 natively
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class PrecisionChoice(NamedTuple):
    """A ``train.mixed_precision`` value ("bf16" or "no") and why it was chosen, in one line."""

    mixed_precision: str
    reason: str


class CpuInfo(NamedTuple):
    """What a benchmark records about the CPU: model name, PyTorch's SIMD level, native bf16 or not."""

    model: str
    capability: str
    native_bf16: bool


def cpu_info() -> CpuInfo:
    """The CPU's model name, PyTorch's capability string (e.g. "AVX2", "AVX512") and whether it has native bf16.

    Example::

        >>> info = cpu_info()
        >>> isinstance(info.native_bf16, bool) and bool(info.capability)
        True
    """
    return CpuInfo(_cpu_model(), torch.backends.cpu.get_cpu_capability(), cpu_has_native_bf16())


def cpu_has_native_bf16() -> bool:
    """True if the CPU has AVX512-BF16 or AMX: asked of PyTorch's own CPU detection, else of /proc/cpuinfo.

    Example::

        >>> isinstance(cpu_has_native_bf16(), bool)
        True
    """
    # PyTorch's probes (private, present in 2.13) answer for every OS; /proc/cpuinfo only on Linux.
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(probe) for probe in probes):
        return any(probe() for probe in probes)
    return bool(set(NATIVE_BF16_FLAGS) & _cpu_flags())


def fastest_precision(device: str | None = None) -> PrecisionChoice:
    """The faster of bf16 autocast and fp32 on ``device`` ("cuda", "cpu"; None: CUDA if available, else the CPU).

    Example::

        >>> fastest_precision("cpu").mixed_precision in ("bf16", "no")
        True
    """
    return _fastest_on(torch.device(device).type if device else "cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def _fastest_on(device_type: str) -> PrecisionChoice:
    # The hardware does not change while a process runs: decided, and logged, once per device type.
    choice = _choose(device_type)
    log.info("train.mixed_precision=auto on %s: %s (%s)", device_type, choice.mixed_precision, choice.reason)
    return choice


def _choose(device_type: str) -> PrecisionChoice:
    if device_type == "cuda":
        if not torch.cuda.is_available():
            return PrecisionChoice("no", "no CUDA device is available")
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", f"{torch.cuda.get_device_name()} computes bf16 natively")
        return PrecisionChoice("no", f"{torch.cuda.get_device_name()} has no bf16 support")
    if device_type != "cpu":
        return PrecisionChoice("no", f"bf16 autocast is not known to be faster on {device_type}")
    capability = torch.backends.cpu.get_cpu_capability()
    if cpu_has_native_bf16():
        return PrecisionChoice("bf16", f"the CPU ({capability}) has AVX512-BF16/AMX: native bf16 matrix products")
    return PrecisionChoice("no", f"the CPU ({capability}) has no AVX512-BF16/AMX: bf16 would be emulated, slower")


def _cpu_flags() -> set[str]:
    return set(_cpuinfo_field("flags").split())


def _cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def _cpuinfo_field(name: str) -> str:
    """The value of the first ``name`` line of /proc/cpuinfo ("" where there is none, e.g. off Linux)."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return ""
    return next((line.partition(":")[2].strip() for line in lines if line.partition(":")[0].strip() == name), "")
