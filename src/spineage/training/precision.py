"""Which number format and memory layout train fastest here, without hurting accuracy.

On CUDA: float16 autocast with a gradient scaler. On CPU: bfloat16 autocast
only where the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere
oneDNN emulates it and it is slower than float32 (measured by
``benchmarks/bench_train.py``). channels_last_3d speeds up the CPU
convolutions, most of all the first one (one input channel).

Example:
    >>> choose_cpu_precision("float32")
    'float32'
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


def choose_cpu_precision(setting: str = "auto") -> str:
    """``float32`` or ``bfloat16``: the setting itself, or for ``auto`` bfloat16 only on native-bf16 CPUs."""
    if setting == "auto":
        return "bfloat16" if cpu_has_native_bfloat16() else "float32"
    if setting not in ("float32", "bfloat16"):
        raise ValueError(f"Expected a CPU precision among auto, float32, bfloat16, found {setting!r}")
    return setting


def use_channels_last(device: torch.device | str = "cpu", setting: bool = True) -> bool:
    """Whether to keep 3D activations channels-last: on CPU when ``setting`` is on."""
    return bool(setting) and str(device).startswith("cpu")


def autocast(device: torch.device, cpu_precision: str = "float32", mixed_precision: bool = True) -> AbstractContextManager:
    """float16 autocast on CUDA when ``mixed_precision``, bfloat16 on CPU when ``cpu_precision`` says so, else a no-op."""
    import torch

    if device.type == "cuda" and mixed_precision:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and cpu_precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
