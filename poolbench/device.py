"""Device and numeric precision selection."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from poolbench.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; valid here: auto, cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"expected device to be one of auto, cpu, cuda, got {device!r}")
    return torch.device(device)


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AVX-512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    """How a run computes: ``dtype`` is the autocast dtype, or None for plain fp32."""

    name: str
    dtype: torch.dtype | None
    use_scaler: bool = False

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``auto``: bf16 autocast where the CPU or GPU has bf16, fp16 + scaler on older GPUs."""
    if precision == "fp32":
        return Precision("fp32", None)
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision=bf16 but this GPU has no bf16; valid: auto, fp32, fp16")
        return Precision("bf16", torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("precision=fp16 needs a CUDA device; valid on CPU: auto, fp32, bf16")
        return Precision("fp16", torch.float16, use_scaler=True)
    if precision == "auto":
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                return Precision("bf16", torch.bfloat16)
            return Precision("fp16", torch.float16, use_scaler=True)
        return Precision("bf16", torch.bfloat16) if cpu_supports_bf16() else Precision("fp32", None)
    raise ConfigError(f"expected precision to be one of auto, fp32, bf16, fp16, got {precision!r}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_channels_last(setting: str | bool, device: torch.device, precision: Precision) -> bool:
    """``auto``: NHWC memory order where it was measured to help, i.e. under bf16/fp16 autocast
    (oneDNN's bf16 convolutions and CUDA tensor cores want NHWC; on this 2-core CPU a bf16
    training step of the default model ran about 1.5x faster in NHWC, while fp32 ran slower).
    See benchmarks/train_speed.py."""
    if setting == "auto":
        return precision.dtype is not None
    return bool(setting)
