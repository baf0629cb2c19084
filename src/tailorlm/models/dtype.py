"""Which weights dtype the local model runs in: ``"auto"`` is bf16 only where it is native.

Kept apart from :mod:`tailorlm.models.local` so that settings-level code (suite
fingerprints) can resolve ``"auto"`` without importing the generator.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["native_bf16", "resolve_dtype"]


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """The dtype a generator built with ``dtype`` uses: "auto" -> bf16 where native, else fp32."""
    if dtype == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return dtype


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware (``dtype="auto"`` then picks bf16).

    On CPUs that emulate bf16 (no AVX512-BF16 or AMX on x86, no BF16 extension on ARM) it
    is slower than fp32, so "auto" keeps fp32 there. Read from the CPU's feature flags
    (Linux ``/proc/cpuinfo``, macOS ``sysctl``); False when they cannot be read.
    """
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        flags = []
    if flags:
        return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags))
    import platform
    import subprocess

    if platform.system() == "Darwin":
        out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, check=False)
        return out.stdout.strip() == "1"
    return False
