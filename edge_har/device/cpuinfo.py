"""The CPU this process runs on: model name and the instruction-set features int8 speed depends on.

Whether a full-integer model beats float32 depends on the CPU, not on the model alone:
XNNPACK's int8 kernels are fast where the CPU has an int8 dot-product
instruction (x86 VNNI or AMX, ARM ``asimddp`` SDOT or ``i8mm``) and barely faster than
float where it has none (an AMD Zen 3 or a Raspberry Pi 4's Cortex-A72). The device keys
its cached variant choice on this, and the benchmarks print it above every latency table.

Read from ``/proc/cpuinfo`` only (Linux, which is every target): no dependency, no import
of a runtime. Elsewhere the fields are empty and the model falls back to ``platform``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

# The flags that decide int8 vs float speed, as /proc/cpuinfo spells them -> the name printed.
X86_FLAGS: dict[str, str] = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
}
ARM_FLAGS: dict[str, str] = {
    "asimd": "NEON",
    "asimddp": "DOTPROD",
    "i8mm": "I8MM",
    "asimdhp": "FP16",
    "sve": "SVE",
    "sve2": "SVE2",
    "bf16": "BF16",
}
# ARM's "CPU part" numbers (implementer 0x41) for the cores a Pi-class board has: aarch64
# kernels print no "model name", and "Cortex-A72" says more than "BCM2835".
ARM_PARTS: dict[int, str] = {
    0xD03: "Cortex-A53",
    0xD04: "Cortex-A35",
    0xD05: "Cortex-A55",
    0xD07: "Cortex-A57",
    0xD08: "Cortex-A72",
    0xD09: "Cortex-A73",
    0xD0A: "Cortex-A75",
    0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1",
    0xD0D: "Cortex-A77",
    0xD40: "Neoverse-V1",
    0xD41: "Cortex-A78",
    0xD44: "Cortex-X1",
    0xD46: "Cortex-A510",
    0xD47: "Cortex-A710",
    0xD48: "Cortex-X2",
    0xD49: "Neoverse-N2",
    0xD4B: "Cortex-A78C",
}


@dataclass(frozen=True)
class CpuInfo:
    """What ``/proc/cpuinfo`` says about the first CPU, reduced to what int8 speed depends on."""

    model: str
    arch: str
    flags: tuple[str, ...] = ()  # the printed names of X86_FLAGS / ARM_FLAGS present, in table order
    board: Optional[str] = None  # /proc/device-tree/model on a Raspberry Pi
    raw_flags: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    @property
    def int8_dot(self) -> str:
        """The best int8 multiply-accumulate the CPU has: 'amx', 'vnni', 'i8mm', 'dotprod' or 'none'.

        'none' is the class where int8 has little head-room over float (AVX2-only x86, NEON
        without dot product): the class where int8 measures slower than float32.
        """
        have = set(self.flags)
        for name, flags in (
            ("amx", {"AMX-INT8"}),
            ("vnni", {"AVX512-VNNI", "AVX-VNNI"}),
            ("i8mm", {"I8MM"}),
            ("dotprod", {"DOTPROD"}),
        ):
            if have & flags:
                return name
        return "none"

    def summary(self) -> str:
        """One line for logs and table headers: ``AMD EPYC (x86_64: AVX2 FMA AVX-512 AVX512-VNNI; int8 dot: vnni)``."""
        where = f"{self.board}, {self.model}" if self.board and self.model not in self.board else self.model
        flags = " ".join(self.flags) or "no SIMD flags listed"
        return f"{where} ({self.arch}: {flags}; int8 dot product: {self.int8_dot})"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "arch": self.arch,
            "board": self.board,
            "flags": list(self.flags),
            "int8_dot": self.int8_dot,
        }


def parse_cpuinfo(text: str, arch: str, board: Optional[str] = None) -> CpuInfo:
    """A :class:`CpuInfo` from the text of ``/proc/cpuinfo`` (the first processor's block)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields.get("processor") is not None and ("flags" in fields or "Features" in fields):
                break  # the first processor's block is enough: the cores of a board are alike
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    raw = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    table = (
        ARM_FLAGS if ("Features" in fields and "flags" not in fields) or arch in ("aarch64", "armv7l") else X86_FLAGS
    )
    flags = tuple(name for key, name in table.items() if key in raw)
    model = fields.get("model name") or fields.get("cpu model") or ""
    if not model and fields.get("CPU part"):
        try:
            model = ARM_PARTS.get(int(fields["CPU part"], 16), f"ARM part {fields['CPU part']}")
        except ValueError:
            model = f"ARM part {fields['CPU part']}"
    if not model:
        model = fields.get("Hardware") or platform.processor() or arch or "unknown CPU"
    return CpuInfo(model=model, arch=arch, flags=flags, board=board, raw_flags=raw)


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo", device_tree: str | Path = "/proc/device-tree/model") -> CpuInfo:
    """This machine's :class:`CpuInfo` (files readable by any user, also under the hardened unit)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    try:
        board: Optional[str] = Path(device_tree).read_text(errors="replace").strip("\x00 \n") or None
    except OSError:
        board = None
    return parse_cpuinfo(text, platform.machine(), board)
