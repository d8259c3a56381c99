"""The int8 study runs end to end on the product's code (--quick, tiny synthetic HMP-layout data).

The study's figures are only worth keeping if the study still runs and still
measures what ``edge-har convert`` writes; this runs its one command in quick
mode and checks that every step produced its part of the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")

from edge_har.convert.models import ModelConfig  # noqa: E402
from research import int8_study  # noqa: E402


def test_default_candidate_is_the_products_default_architecture() -> None:
    """The comment and the README call w_s3_l128 the product's default; keep that true."""
    ours = int8_study.CANDIDATES["w_s3_l128"].config
    d = ModelConfig()
    fields = (
        "conv_filters",
        "kernel_size",
        "pool_size",
        "conv_dropout",
        "lstm_units",
        "dropout",
        "batch_norm",
        "bidirectional",
    )
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(d, f) for f in fields}


def test_cache_key_unchanged() -> None:
    """A candidate's cache key is fixed, so weights already trained and cached are found again."""
    assert int8_study.CANDIDATES["s24_l64"].key() == "c74a935889cf"
    c = int8_study.CANDIDATES["s24_l64"].describe()
    assert (c["conv_filters"], c["pool_size"], c["lstm_units"]) == ([32, 64], 2, 64)


def test_recipe_flags_follow_the_product_converter() -> None:
    from edge_har.convert.quantize import PER_TENSOR_ALL, PER_TENSOR_DENSE

    assert int8_study.RECIPES["fused"].converter_flags("float32") == {}
    assert int8_study.RECIPES["fused"].converter_flags("int8") == {PER_TENSOR_DENSE: False}
    assert int8_study.RECIPES["projected_pt"].converter_flags("int8") == {PER_TENSOR_DENSE: True}
    assert int8_study.RECIPES["unrolled_zs_ptall_sn"].converter_flags("int8")[PER_TENSOR_ALL] is True


@pytest.mark.slow  # a real run of its own (~20-35 s): CI's slow step runs it
def test_quick_study_runs_end_to_end(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    rc = int8_study.main(
        ["--data", str(tiny_dataset_dir), "--out", str(out), "--cache", str(tmp_path / "cache"), "--quick"]
    )
    assert rc == 0
    results = json.loads((out / "int8_study.json").read_text())
    assert results["data"]["loader"].startswith("edge_har.convert.datasets.load_hmp")
    cand = results["candidates"]["w_s3_l128"]
    assert cand["steps"] == 3
    assert set(cand["models"]) == {"fused", "projected_pt"}
    for recipe in ("fused", "projected_pt"):
        for variant in ("float32", "int8"):
            entry = cand["models"][recipe][variant]
            assert "error" not in entry, entry
            assert entry["latency"]["t1_xnn"]["p50_us"] > 0
            assert 0.0 <= entry["accuracy"] <= 1.0
    # The product's default int8 file: unrolled projected LSTM, full integer, int8 in and out.
    default_int8 = cand["models"]["projected_pt"]["int8"]
    assert default_int8["float_ops"] == {}
    assert (default_int8["input_dtype"], default_int8["output_dtype"]) == ("int8", "int8")
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in cand["models"]["fused"]["float32"]["ops"]
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in default_int8["ops"]
    assert set(results["predict_latency"]) == {
        f"w_s3_l128/{r}/{v}" for r in ("fused", "projected_pt") for v in ("float32", "int8")
    }
    md = (out / "int8_study.md").read_text()
    assert "## One thread, XNNPACK on" in md and "--quick" in md
