"""CPU model and int8-relevant flags from /proc/cpuinfo texts of the CPU classes int8 speed differs on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_har.benchmarks.cpuinfo import cpu_class, format_cpu
from edge_har.device.cpuinfo import cpu_info, parse_cpuinfo

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni

processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu avx512f avx512_vnni
"""
ICELAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni
"""
SAPPHIRE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 fma avx512f avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd08

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b
"""
I8MM = """processor\t: 0
Features\t: fp asimd asimddp sve i8mm bf16 sve2
CPU part\t: 0xd40
"""


@pytest.mark.parametrize(
    "text, arch, model, flags, dot",
    [
        (ZEN3, "x86_64", "AMD EPYC 7B13", ("AVX2", "FMA"), "none"),
        (
            ICELAKE,
            "x86_64",
            "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
            ("AVX2", "FMA", "AVX-512", "AVX512-VNNI"),
            "vnni",
        ),
        (SAPPHIRE, "x86_64", "Intel(R) Xeon(R) Platinum 8480+", None, "amx"),
        (PI4, "aarch64", "Cortex-A72", ("NEON",), "none"),
        (PI5, "aarch64", "Cortex-A76", ("NEON", "DOTPROD", "FP16"), "dotprod"),
        (I8MM, "aarch64", "Neoverse-V1", ("NEON", "DOTPROD", "I8MM", "SVE", "SVE2", "BF16"), "i8mm"),
    ],
)
def test_each_cpu_class_is_named_with_its_int8_instruction(text, arch, model, flags, dot):
    info = parse_cpuinfo(text, arch)
    assert info.model == model
    if flags is not None:
        assert info.flags == flags
    assert info.int8_dot == dot
    assert model in info.summary() and f"int8 dot product: {dot}" in info.summary()


def test_only_the_first_processor_counts_and_the_board_is_kept():
    info = parse_cpuinfo(ZEN3, "x86_64")
    assert "AVX-512" not in info.flags  # the second block's flags are not the first CPU's
    pi = parse_cpuinfo(PI4, "aarch64", board="Raspberry Pi 4 Model B Rev 1.4")
    assert pi.summary().startswith("Raspberry Pi 4 Model B Rev 1.4, Cortex-A72 (aarch64: NEON;")
    assert pi.to_json()["int8_dot"] == "none" and pi.to_json()["board"].startswith("Raspberry Pi 4")


def test_an_empty_or_unreadable_cpuinfo_still_names_something(tmp_path):
    info = parse_cpuinfo("", "riscv64")
    assert info.model and info.flags == () and info.int8_dot == "none"
    missing = cpu_info(tmp_path / "nope", tmp_path / "nope2")
    assert missing.model and missing.board is None


def test_the_bench_side_names_the_class_and_prints_one_line():
    assert cpu_class(parse_cpuinfo(ZEN3, "x86_64")) == "x86 AVX2, no int8 dot product"
    assert cpu_class(parse_cpuinfo(ICELAKE, "x86_64")) == "x86 AVX-512 VNNI"
    assert cpu_class(parse_cpuinfo(PI4, "aarch64")) == "ARM NEON, no dot product"
    assert cpu_class(parse_cpuinfo(PI5, "aarch64")) == "ARM dot product (SDOT)"
    assert format_cpu(parse_cpuinfo(PI5, "aarch64")).startswith("CPU: Cortex-A76")


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="Linux only")
def test_this_machine_has_a_model_and_its_flags_are_in_proc_cpuinfo():
    info = cpu_info()
    raw = Path("/proc/cpuinfo").read_text()
    assert info.model and info.arch
    assert info.raw_flags and all(f in raw for f in info.raw_flags)
