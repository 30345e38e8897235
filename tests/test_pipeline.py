"""End to end: all five stages on the tiny default, in temporary copies of the project.

`pipeline_run` is shared and read-only: a test that changes a run (an experiment, a push) works on a copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import BIN, ROOT, copy_run, run_module, sh
from slmtune.artifacts import ARTIFACT_NAMES

pytestmark = pytest.mark.slow
ARTIFACTS = list(ARTIFACT_NAMES)
LABELS = {"sad", "joy", "fear", "surprise"}
# Outputs whose figures depend on the machine and its load; every other output reproduces exactly.
WALL_CLOCK = {"metrics/train_run.json", "metrics/eval_run.json", "plots/latency.json"}


def classify(project: Path, *args: str):
    """`slmtune classify ARGS` in `project`, in this process (one test runs the installed command itself)."""
    return run_module(["-m", "slmtune.cli", "classify", *args], project)


def eval_metrics(project: Path) -> dict:
    return json.loads((project / "metrics/eval.json").read_text())


def test_pipeline_writes_every_output(pipeline_run):
    expected = [
        "data/prepared/train.jsonl",
        "data/prepared/val.jsonl",
        "data/prepared/test.jsonl",
        "models/base/config.json",
        "models/base/model.safetensors",
        "models/base/tokenizer.json",
        "models/adapter/adapter_config.json",
        "models/adapter/adapter_model.safetensors",
        "models/merged/model.safetensors",
        "models/merged/tokenizer.json",
        "models/int4/genai_config.json",
        "models/int4/model.onnx",
        "models/int4/tokenizer.json",
        "metrics/train.json",
        "metrics/train_run.json",
        "metrics/eval.json",
        "dvclive/train/plots/metrics/loss.tsv",
        *[f"plots/confusion/{name}.json" for name in ARTIFACTS],
        *[f"plots/answers/{name}.json" for name in ARTIFACTS],
        "plots/artifacts.json",
        "plots/generation.json",
        "plots/latency.json",
        "metrics/eval_run.json",
    ]
    assert [name for name in expected if not (pipeline_run / name).is_file()] == []
    leftovers = [p for p in pipeline_run.rglob(".*.tmp")]
    assert leftovers == []


def test_int4_model_is_accurate_and_close_to_merged(pipeline_run):
    metrics = eval_metrics(pipeline_run)
    assert metrics["int4"]["accuracy"] >= 0.80
    assert abs(metrics["int4"]["accuracy"] - metrics["merged"]["accuracy"]) <= 0.02
    assert metrics["base"]["accuracy"] <= 0.40  # four balanced classes: chance is 0.25


def test_fine_tuned_artifacts_agree(pipeline_run):
    metrics = eval_metrics(pipeline_run)
    assert metrics["agreement"]["adapter_vs_merged"] == 1.0
    assert metrics["adapter"]["accuracy"] == metrics["merged"]["accuracy"]


def test_eval_reports_every_figure_per_artifact(pipeline_run):
    metrics = eval_metrics(pipeline_run)
    for name in ARTIFACTS:
        block = metrics[name]
        assert set(block["f1"]) == LABELS
        for key in ("accuracy", "macro_f1", "generation_accuracy", "size_mb"):
            assert block[key] >= 0, (name, key)
    assert metrics["int4"]["size_mb"] < metrics["merged"]["size_mb"]
    latency = json.loads((pipeline_run / "plots/latency.json").read_text())
    assert [row["artifact"] for row in latency] == ARTIFACTS
    assert all(row["latency_ms"] > 0 for row in latency)
    run = json.loads((pipeline_run / "metrics/eval_run.json").read_text())
    assert {name: block["latency_ms"] for name, block in run.items()} == {
        r["artifact"]: r["latency_ms"] for r in latency
    }


def test_training_loss_falls(pipeline_run):
    rows = (pipeline_run / "dvclive/train/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    losses = [float(row.split("\t")[1]) for row in rows]
    assert losses[-1] < losses[0] / 4
    train = json.loads((pipeline_run / "metrics/train.json").read_text())
    assert 0 < train["trainable_parameters"] < train["total_parameters"]
    run = json.loads((pipeline_run / "metrics/train_run.json").read_text())
    assert run["tokens_per_second"] > 0 and run["peak_memory_mb"] > 0 and run["resumed_from_step"] == 0
    assert not set(run) & set(train)


def test_second_repro_changes_nothing(pipeline_run):
    result = sh(["dvc", "repro"], pipeline_run)
    assert "Data and pipelines are up to date" in result.stdout
    assert "Running stage" not in result.stdout


def test_tokenizer_ids_match_onnx_runtime_genai_on_the_whole_data_set(pipeline_run):
    import onnxruntime_genai as og
    from transformers import AutoTokenizer

    folder = pipeline_run / "models/int4"
    hf = AutoTokenizer.from_pretrained(str(folder))
    ort = og.Tokenizer(og.Model(str(folder)))
    texts = [json.loads(line)["phrase"] for line in (pipeline_run / "data/raw/tone.jsonl").open()]
    texts += [json.loads(line)["prompt"] for line in (pipeline_run / "data/prepared/test.jsonl").open()]
    mismatched = [t for t in texts if list(ort.encode(t)) != hf(t, add_special_tokens=False)["input_ids"]]
    assert mismatched == []


def test_classify_prints_one_tone(pipeline_run):
    result = sh(
        [str(BIN / "slmtune"), "classify", "cricket is a wonderful sport!", "--model-path", "models/int4"], pipeline_run
    )
    assert result.stdout.strip() in LABELS
    assert classify(pipeline_run, "cricket is a wonderful sport!").stdout == result.stdout  # in-process: the same


@pytest.mark.parametrize("folder", ["models/int4", "models/merged"])
def test_classify_file_mode_adds_a_prediction_to_every_row(pipeline_run, tmp_path, folder):
    rows = [
        {"id": 1, "phrase": "I can't stop crying since she left."},
        {"id": 2, "phrase": "Whoa, I never expected that ending!"},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    assert classify(pipeline_run, "--input", str(source), "--output", str(out), "--model-path", folder).returncode == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "prediction"} for r in written] == rows
    assert {r["prediction"] for r in written} <= LABELS


@pytest.mark.parametrize("folder", ["models/int4", "models/merged"])
def test_classify_scores_are_label_probabilities_that_agree_with_the_prediction(pipeline_run, tmp_path, folder):
    phrases = ["I can't stop crying since she left.", "Whoa, I never expected that ending!", "I am so scared."]
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"phrase": p}) + "\n" for p in phrases))
    command = ["--input", str(source), "--model-path", folder]
    assert classify(pipeline_run, *command, "--output", str(out), "--scores").returncode == 0
    assert classify(pipeline_run, *command, "--output", str(tmp_path / "plain.jsonl")).returncode == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    plain = [json.loads(line)["prediction"] for line in (tmp_path / "plain.jsonl").read_text().splitlines()]
    assert [row["prediction"] for row in scored] == plain
    for row in scored:
        assert set(row["scores"]) == LABELS
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["prediction"] == max(row["scores"], key=row["scores"].get)
    single = classify(pipeline_run, phrases[2], "--model-path", folder, "--scores")
    alone = json.loads(single.stdout)  # scored alone, not in a padded batch: equal up to float rounding
    assert alone["prediction"] == scored[2]["prediction"]
    assert alone["scores"] == pytest.approx(scored[2]["scores"], abs=1e-4)


def test_int4_and_merged_classify_the_test_split_alike(pipeline_run, tmp_path):
    out = {}
    for folder in ("models/int4", "models/merged"):
        out[folder] = tmp_path / f"{Path(folder).name}.jsonl"
        result = classify(
            pipeline_run, "--input", "data/prepared/test.jsonl", "--output", str(out[folder]), "--model-path", folder
        )
        assert result.returncode == 0, result.stderr
    predictions = {k: [json.loads(x)["prediction"] for x in v.read_text().splitlines()] for k, v in out.items()}
    same = sum(a == b for a, b in zip(*predictions.values(), strict=True)) / len(predictions["models/int4"])
    assert same >= 0.95


def test_classify_rejects_a_bad_row_and_writes_nothing(pipeline_run, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"phrase": "fine"}\n{"text": "no phrase here"}\n')
    out = tmp_path / "out.jsonl"
    result = classify(pipeline_run, "--input", str(source), "--output", str(out), "--model-path", "models/int4")
    assert result.returncode == 1
    assert f"{source}:2" in result.stderr
    assert not out.exists()


def test_classify_names_a_missing_model_folder(pipeline_run):
    result = classify(pipeline_run, "hi", "--model-path", "models/nothing")
    assert result.returncode == 1
    assert "models/nothing" in result.stderr


def test_plots_render_loss_and_confusion_matrices(pipeline_run, tmp_path):
    sh(["dvc", "plots", "show", "--out", str(tmp_path / "plots")], pipeline_run)
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "Training loss" in page
    for name in ARTIFACTS:  # one confusion matrix per artifact, from the one plots/confusion entry
        assert f"plots/confusion/{name}.json" in page
    for title in ("Accuracy by artifact", "Size on disk by artifact", "Latency per phrase by artifact"):
        assert title in page
    rows = json.loads((pipeline_run / "plots/artifacts.json").read_text())
    metrics = eval_metrics(pipeline_run)
    assert [row["artifact"] for row in rows] == ARTIFACTS  # the pipeline's order, base first
    for row in rows:
        for field in ("accuracy", "macro_f1", "size_mb"):
            assert row[field] == metrics[row["artifact"]][field]


def test_push_then_pull_into_a_fresh_clone(pipeline_run, tmp_path):
    project = copy_run(pipeline_run, tmp_path / "project")
    sh(["dvc", "push"], project)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    sh(["dvc", "remote", "modify", "--local", "local", "url", str(tmp_path / "remote")], clone)
    sh(["dvc", "pull"], clone)
    assert (clone / "models/int4/model.onnx").is_file()
    status = sh(["dvc", "status"], clone)
    assert "up to date" in status.stdout
    result = classify(clone, "I am so scared of the dark.", "--model-path", "models/int4")
    assert result.stdout.strip() in LABELS


def output_hashes(lock: dict, stages: tuple[str, ...] | None = None) -> dict[str, str]:
    """Every stage output's path and content hash in a dvc.lock (of `stages`, default all), wall-clock outputs
    left out."""
    return {
        out["path"]: out["md5"]
        for name, stage in lock["stages"].items()
        if stages is None or name in stages
        for out in stage.get("outs", [])
        if out["path"] not in WALL_CLOCK
    }


def differing_outputs(reproduced_run: Path, stages: tuple[str, ...] | None = None) -> list[str]:
    """The outputs (of `stages`) whose hash in `reproduced_run`'s dvc.lock differs from the committed one."""
    committed = output_hashes(yaml.safe_load((ROOT / "dvc.lock").read_text()), stages)
    reproduced = output_hashes(yaml.safe_load((reproduced_run / "dvc.lock").read_text()), stages)
    assert committed, f"the committed dvc.lock has no outputs of {stages}"
    return sorted(path for path in committed if reproduced.get(path) != committed[path])


def test_a_cold_repro_reproduces_the_prepared_data_and_base_model_on_any_machine(pipeline_run):
    """`prepare` computes no floating-point sums whose rounding the CPU decides: its outputs are the committed
    ones on every machine."""
    assert differing_outputs(pipeline_run, ("prepare",)) == []


def test_a_cold_repro_reproduces_every_committed_output_exactly(pipeline_run):
    """The committed dvc.lock came from another run (another machine, perhaps): every data and model output,
    every quality figure and plot is bit-identical; only the wall-clock files may differ. Training reproduces
    across machines whose CPU kernels match (metrics/train_run.json's cpu_kernels): MKL takes vendor-specific
    code paths, so an AMD machine cannot reproduce an Intel machine's adapter (docs/reproducibility.md)."""
    committed = json.loads((ROOT / "metrics/train_run.json").read_text()).get("cpu_kernels")
    here = json.loads((pipeline_run / "metrics/train_run.json").read_text())["cpu_kernels"]
    if committed != here:
        pytest.skip(f"dvc.lock was made on CPU kernels {committed!r}, this machine has {here!r}: `make repro` here")
    assert {"models/adapter", "models/int4", "metrics/eval.json", "plots/confusion"} <= set(
        output_hashes(yaml.safe_load((ROOT / "dvc.lock").read_text()))
    )
    differing = differing_outputs(pipeline_run)
    assert differing == [], f"outputs that did not reproduce the committed dvc.lock: {differing}"


def test_no_file_the_run_wrote_holds_a_secret(pipeline_run):
    from helpers import FAKE_SECRETS, ROOT

    def written(path: Path) -> bool:  # not a project file copied unchanged (tests/conftest.py holds the fakes)
        source = ROOT / path.relative_to(pipeline_run)
        return not source.is_file() or source.read_bytes() != path.read_bytes()

    secrets = [value.encode() for value in FAKE_SECRETS.values()]
    files = [p for p in pipeline_run.rglob("*") if p.is_file() and written(p)] + [pipeline_run.parent / "repro.log"]
    assert len(files) > 50
    leaks = [(str(path), secret[:8]) for path in files for secret in secrets if secret in path.read_bytes()]
    assert leaks == []


@pytest.fixture
def experiment_run(pipeline_run, tmp_path) -> Path:
    """A copy of the reproduced project, its DVC cache included, where experiments may run."""
    return copy_run(pipeline_run, tmp_path / "project")


def test_experiments_with_a_changed_param_show_up_in_exp_show(experiment_run):
    result = sh(["dvc", "exp", "run", "--name", "fewer-reps", "-S", "eval.latency_repetitions=1"], experiment_run)
    assert "Running stage 'eval'" in result.stdout and "Running stage 'train_lora'" not in result.stdout
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], experiment_run).stdout)
    experiments = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                experiments[rev.get("name")] = rev["data"]
    assert "fewer-reps" in experiments
    data = experiments["fewer-reps"]
    assert data["params"]["params.yaml"]["data"]["eval"]["latency_repetitions"] == 1
    eval_json = data["metrics"]["metrics/eval.json"]["data"]
    assert eval_json["int4"]["accuracy"] >= 0.80
    assert "train_loss" in data["metrics"]["metrics/train.json"]["data"]


def test_the_repro_log_shows_the_stages_own_lines_not_library_logging(pipeline_run):
    """ONNX Runtime's quantizer logs two INFO lines per MatMul (hundreds for Phi-3-mini); the log keeps each
    stage's start, its figures and its end."""
    log = (pipeline_run.parent / "repro.log").read_text(encoding="utf-8")
    assert "[slmtune] stage build_int4: done" in log
    assert [line for line in log.splitlines() if "[INFO]" in line or "matmul_nbits_quantizer" in line] == []
