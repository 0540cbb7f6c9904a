"""How a CPU run is made fast: glibc's allocator kept from mmapping every step, channels-last, bfloat16.

Measured on a 2-core Xeon (docs/training.md, "Speed on this CPU"): a training step of
EfficientNet-Lite0 at 224 px allocates activations of tens of MB, which glibc's malloc serves
with ``mmap`` and hands back with ``munmap`` every step, so every step page-faults them in again
(about 1.3 million minor faults and a third of the CPU time in the kernel). Keeping them on the
heap (``M_MMAP_MAX=0``) and not trimming the heap top (``M_TRIM_THRESHOLD``) is what preloading
tcmalloc did, from inside the product. Channels-last lets oneDNN run the depthwise convolutions
and their gradients in its fast layout. bfloat16 autocast pays only on CPUs that compute it in
hardware (AVX-512 BF16 or AMX); elsewhere it is emulated and slower, so ``'auto'`` leaves it off.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
from typing import Any, Iterator

# glibc's mallopt parameters (malloc.h) and their defaults, restored after a run.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_KEEP_HEAP_BYTES = 1 << 30  # the heap top kept between steps: larger than one step's activations
_OTHER_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")
_OFF_VALUES = ("0", "false", "no", "off")


def _glibc_mallopt() -> Any | None:
    """glibc's ``mallopt`` and ``malloc_trim``, or None where they do not apply: not Linux with glibc,
    another allocator preloaded (it has its own answer), or ``SIGHTQL_MALLOC_TUNING=0``."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    if os.environ.get("SIGHTQL_MALLOC_TUNING", "1").strip().lower() in _OFF_VALUES:
        return None
    if any(name in os.environ.get("LD_PRELOAD", "") for name in _OTHER_ALLOCATORS):
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextlib.contextmanager
def tuned_malloc() -> Iterator[bool]:
    """Within the block, large blocks stay on glibc's heap (yields whether that applied here). On the way
    out the defaults come back and the kept memory is handed back to the system (``malloc_trim``), so a
    notebook or app that trained once does not keep the training's peak. Process-wide, so the block
    should hold the whole run and nothing that minds (nothing does: it changes speed, not results)."""
    libc = _glibc_mallopt()
    if libc is None:
        yield False
        return
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_HEAP_BYTES))
    try:
        yield applied
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX tiles)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None)]
    return any(bool(check()) for check in checks if check is not None)


def choose_precision(precision: str, device: str, fast_bf16: bool | None = None) -> str:
    """``'fp32'`` or ``'bf16'``: the CPU autocast a run trains with. ``'auto'`` picks bf16 only on a CPU with
    bfloat16 hardware (``fast_bf16``, detected when None); ``'bf16'`` asks for it anyway (emulated, slower);
    on CUDA the ``amp`` setting decides (float16 autocast), so this is ``'fp32'`` there."""
    if not device.startswith("cpu") or precision == "fp32":
        return "fp32"
    if precision == "bf16":
        return "bf16"
    return "bf16" if (cpu_has_fast_bf16() if fast_bf16 is None else fast_bf16) else "fp32"


def autocast(device: str, cuda_amp: bool, precision: str) -> Any:
    """The autocast context a step runs under: float16 on CUDA with ``amp``, bfloat16 on a CPU when
    ``precision == 'bf16'``, otherwise none."""
    import torch

    if device.startswith("cuda"):
        return torch.autocast(device_type="cuda", enabled=cuda_amp)
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def to_channels_last(model: Any, device: str) -> Any:
    """The model in channels-last memory format on a CPU (oneDNN's fast layout); unchanged on CUDA."""
    import torch

    return model.to(memory_format=torch.channels_last) if device.startswith("cpu") else model


@contextlib.contextmanager
def fast_cpu(model: Any, device: str) -> Iterator[None]:
    """The block runs ``model`` as training does on a CPU: malloc tuned (:func:`tuned_malloc`) and the
    weights channels-last; they leave in the ordinary layout, for safetensors and the exports."""
    with tuned_malloc():
        to_channels_last(model, device)
        try:
            yield
        finally:
            to_contiguous(model)


def to_contiguous(model: Any) -> Any:
    """Back to the ordinary layout once training ends: safetensors and some exporters want contiguous weights."""
    import torch

    return model.to(memory_format=torch.contiguous_format)
