"""The machine a figure was measured on: CPU model, SIMD features (which pick the 1:N scan kernel), load."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

_WANTED = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni")


@functools.cache
def cpu_model() -> str:
    """The CPU model name (``unknown`` when /proc/cpuinfo cannot be read)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


@functools.cache
def cpu_features() -> frozenset[str]:
    """The SIMD features among avx2/fma/f16c/avx512f/avx512bw/avx512_vnni/avx_vnni."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return frozenset(f for f in _WANTED if f in flags)
    return frozenset()


def has_vnni() -> bool:
    """True when int8 dot products have a native instruction (AVX-512 VNNI or AVX-VNNI)."""
    return bool(cpu_features() & {"avx512_vnni", "avx_vnni"})


def cpu_label() -> dict[str, object]:
    """Model, cores, features and load average: printed next to every figure."""
    return {
        "model": cpu_model(),
        "cores": os.cpu_count(),
        "features": sorted(cpu_features()),
        "vnni": has_vnni(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
