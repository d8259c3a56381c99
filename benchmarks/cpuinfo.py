"""The CPU line every latency table starts with, and the CPU class int8's advantage is reported by.

The parsing lives with the device (:mod:`edge_har.device.cpuinfo`: the daemon keys its cached
variant choice on it, and the device layer may not import benchmarks); this module names the
class the README's per-CPU table uses and prints the line. ``python -m edge_har.benchmarks.cpuinfo``
prints this machine's.
"""

from __future__ import annotations

import json
import logging
import sys

from edge_har.device.cpuinfo import CpuInfo, cpu_info


def cpu_class(info: CpuInfo) -> str:
    """The class int8 speed depends on: 'x86 AVX-512 VNNI', 'ARM NEON, no dot product', ..."""
    dot, flags = info.int8_dot, set(info.flags)
    if info.arch in ("x86_64", "i686", "AMD64"):
        if dot == "amx":
            return "x86 AMX"
        if dot == "vnni":
            return "x86 AVX-512 VNNI" if "AVX512-VNNI" in flags else "x86 AVX-VNNI"
        return "x86 AVX2, no int8 dot product" if "AVX2" in flags else "x86 without AVX2"
    if dot == "i8mm":
        return "ARM i8mm"
    if dot == "dotprod":
        return "ARM dot product (SDOT)"
    return "ARM NEON, no dot product" if "NEON" in flags else f"{info.arch}"


def format_cpu(info: CpuInfo | None = None) -> str:
    info = info or cpu_info()
    return f"CPU: {info.summary()}; class: {cpu_class(info)}"


def cpu_line() -> str | None:
    """:func:`format_cpu`, or None where the CPU cannot be read: a long benchmark must not stop for it."""
    try:
        return format_cpu()
    except Exception as exc:  # noqa: BLE001 - an unreadable /proc/cpuinfo must not stop the benchmark
        logging.getLogger(__name__).debug("no CPU line: %s", exc)
        return None


if __name__ == "__main__":
    info = cpu_info()
    print(format_cpu(info))
    if "--json" in sys.argv[1:]:
        print(json.dumps({**info.to_json(), "class": cpu_class(info)}))
