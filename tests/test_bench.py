"""`make bench` end to end on the tiny model (--quick), and the GPU decode check as a dry run on a CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import ROOT, sh
from slmtune.bench.models import ARTIFACTS
from slmtune.bench.training import padding_overhead

TIMED = {
    "classification": ("batch1_ms_per_phrase", "batch_phrases_per_s"),
    "generation": ("decode_tokens_per_s", "prompt_tokens_per_s"),
    "eval_throughput": ("label_scoring_phrases_per_s", "greedy_generation_phrases_per_s"),
}


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory) -> Path:
    """The results folder of one `python -m slmtune.bench --quick` run."""
    root = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "slmtune.bench", "--quick", "--out", str(root / "out")]
    sh([*command, "--workdir", str(root / "work")], ROOT, timeout=900)
    return root / "out"


@pytest.mark.slow
def test_quick_bench_writes_results_table_and_plot(quick_bench):
    assert sorted(p.name for p in quick_bench.iterdir()) == ["README.md", "bench.png", "results.json"]
    assert (quick_bench / "bench.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    table = (quick_bench / "README.md").read_text()
    for row in ("| PyTorch fp32 (merged) |", "| ONNX fp32 |", "| ONNX int4 |", "| padding-free"):
        assert row in table


@pytest.mark.slow
def test_every_section_holds_positive_figures_for_every_artifact(quick_bench):
    results = json.loads((quick_bench / "results.json").read_text())
    for section, keys in TIMED.items():
        for artifact in ARTIFACTS:
            for key in keys:
                figure = results[section][artifact][key]
                assert figure["min"] > 0 and figure["median"] >= figure["min"], (section, artifact, key)
                assert len(figure["runs"]) == results["settings"]["repetitions"]
    for artifact in ARTIFACTS:
        assert results["size"][artifact]["bytes"] > 0
    assert results["size"]["onnx_int4"]["bytes"] < results["size"]["fp32_safetensors_bytes"]
    for section in ("training", "training_generative"):  # the tone phrases, then the generative task's rows
        for mode in ("padded", "padding_free"):
            run = results[section][mode]
            assert run["tokens_per_second"] > 0 and run["final_loss"] > 0 and run["steps"] == 2
        assert results[section]["padded"]["timed_tokens"] == results[section]["padding_free"]["timed_tokens"]
    assert "## Training throughput on the generative task (home_commands)" in (quick_bench / "README.md").read_text()
    assert results["machine"]["cpu_count"] > 0 and results["machine"]["onnxruntime_genai"]


@pytest.mark.slow
def test_runtime_adapters_are_measured_against_merged_int4_models(quick_bench):
    """Decode and latency with an adapter active vs merged int4; base + N adapters vs N merged models."""
    figures = json.loads((quick_bench / "results.json").read_text())["adapters"]
    for key in ("decode_tokens_per_s", "batch1_ms_per_phrase"):
        assert figures[key]["adapter"]["min"] > 0 and figures[key]["merged"]["min"] > 0, key
    decode = figures["decode_tokens_per_s"]
    assert figures["ratios"]["decode_adapter_over_merged"] == round(
        decode["adapter"]["median"] / decode["merged"]["median"], 3
    )
    assert set(figures["footprint"]) == {"2", "8"}
    for row in figures["footprint"].values():
        assert 0 < row["adapters"]["disk_mb"] < row["merged"]["disk_mb"]  # one base, not N copies of it
        assert row["adapters"]["resident_mb"] > 0 and row["merged"]["resident_mb"] > 0
    assert figures["footprint"]["8"]["merged"]["disk_mb"] > 3 * figures["footprint"]["2"]["merged"]["disk_mb"]
    assert figures["switch"]["set_active_ms"]["median"] > 0 and figures["switch"]["load_ms"]["median"] > 0
    assert "| 8 | " in (quick_bench / "README.md").read_text()


@pytest.mark.slow
def test_each_target_is_reported_with_its_ratio_and_verdict(quick_bench):
    results = json.loads((quick_bench / "results.json").read_text())
    targets = {target["key"]: target for target in results["targets"]}
    assert set(targets) == {"decode", "classification", "size", "training"}
    for target in targets.values():
        assert target["measured"] > 0 and isinstance(target["passed"], bool)
    assert targets["size"]["measured"] == round(
        results["size"]["onnx_int4"]["bytes"] / results["size"]["fp32_safetensors_bytes"], 3
    )
    table = (quick_bench / "README.md").read_text()
    for target in targets.values():
        assert f"| {target['measured']:.2f}x | {'pass' if target['passed'] else 'miss'} |" in table


@pytest.mark.slow
def test_gpu_decode_check_dry_runs_on_a_tiny_cpu_shape(tmp_path):
    command = [
        sys.executable,
        "-m",
        "slmtune.bench",
        "--gpu-phi3-mini",
        "--gpu-model",
        "tiny_phi3",
        "--gpu-provider",
        "cpu",
    ]
    options = ["--gpu-prompt-tokens", "16", "--gpu-new-tokens", "4", "--out", str(tmp_path / "out")]
    sh([*command, *options, "--workdir", str(tmp_path / "work")], ROOT, timeout=600)
    results = json.loads((tmp_path / "out/gpu_decode.json").read_text())
    assert results["model"]["hidden_size"] == 128 and results["settings"]["provider"] == "cpu"
    assert results["decode_tokens_per_s"]["median"] > 0 and results["prompt_tokens_per_s"]["median"] > 0
    assert results["prompt_tokens"] == 16 and results["new_tokens"] == 4
    assert results["bandwidth_limit_tokens_per_s"] == round(4.8e12 / results["weights_bytes"], 1)


def test_bad_settings_stop_before_any_work(tmp_path):
    result = sh(
        [sys.executable, "-m", "slmtune.bench", "--quick", "--repetitions", "0", "--out", str(tmp_path / "out")],
        ROOT,
        check=False,
    )
    assert result.returncode == 1
    assert "'repetitions' is 0; it must be at least 1" in result.stderr
    assert not (tmp_path / "out").exists()


def test_padding_overhead_is_padded_tokens_per_real_token():
    assert padding_overhead([10] * 32, batch=16, seed=0) == 1.0
    assert padding_overhead([1, 3], batch=2, seed=0) == 1.5  # one batch: 2 rows of 3 for 4 real tokens
    assert padding_overhead([1, 3], batch=1, seed=0) == 1.0
