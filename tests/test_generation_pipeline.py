"""Generative tasks end to end: every data format through all five stages, the CLI on the result.

The four runs (generation_runs.py) are a session fixture, shared with the serving tests.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers import sh, tool_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(generation_runs) -> dict[str, Path]:
    return generation_runs


def eval_metrics(project: Path) -> dict:
    return json.loads((project / "metrics/eval.json").read_text())


def slmtune(project: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["slmtune", *args], cwd=project, env=tool_env(), capture_output=True, text=True, input=stdin, timeout=300
    )


def test_the_embedded_generative_task_learns_and_survives_int4(runs):
    metrics = eval_metrics(runs["home_commands"])
    assert metrics["int4"]["exact_match"] >= 0.80
    assert metrics["base"]["exact_match"] <= 0.05
    assert metrics["int4"]["perplexity"] <= 1.05 * metrics["merged"]["perplexity"]
    assert metrics["agreement"]["merged_vs_int4"] >= 0.95  # int4 greedy output equals merged's
    assert metrics["gate"]["passed"] and metrics["test_examples"] == 250
    for name in ("base", "adapter", "merged", "int4"):
        assert set(metrics[name]) == {"perplexity", "exact_match", "chrf", "size_mb"}
    answers = json.loads((runs["home_commands"] / "plots/answers/int4.json").read_text())
    assert len(answers) == 250 and set(answers[0]) == {"prompt", "reference", "output"}


def test_exp_show_and_plots_carry_the_generation_figures(runs):
    project = runs["home_commands"]
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], project).stdout)
    revs = [rev for commit in shown for exp in commit.get("experiments") or [] for rev in exp.get("revs", [])]
    data = next(rev["data"] for rev in revs if rev.get("name") == "home_commands")
    figures = data["metrics"]["metrics/eval.json"]["data"]
    assert {"perplexity", "exact_match", "chrf"} <= set(figures["int4"])
    run_figures = data["metrics"]["metrics/eval_run.json"]["data"]
    assert run_figures["int4"]["tokens_per_s"] > 0
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    for title in ("Perplexity of the reference answers by artifact (generation)", "chrF by artifact (generation)"):
        drawn = json.dumps(plots[title])
        assert '"int4"' in drawn and "perplexity" in drawn  # the bars' data rows


def test_hf_and_onnx_runtime_genai_tokenize_every_prompt_and_response_alike(runs):
    from slmtune.data import read_jsonl
    from slmtune.models import load_tokenizer
    from slmtune.ortgenai import load_model, onnxruntime_genai

    project = runs["home_commands"]
    hf = load_tokenizer(project / "models/int4")
    og = onnxruntime_genai()
    genai = og.Tokenizer(load_model(project / "models/int4"))
    texts = []
    for split in ("train", "val", "test"):
        texts += [
            t for row in read_jsonl(project / f"data/prepared/{split}.jsonl") for t in (row["prompt"], row["response"])
        ]
    assert len(texts) == 2 * 2500
    mismatched = [text for text in texts if list(genai.encode(text)) != hf(text)["input_ids"]]
    assert mismatched == []


def test_only_answer_tokens_carry_loss_in_every_format(runs):
    from slmtune.data import read_jsonl
    from slmtune.models import load_tokenizer
    from slmtune.tokenization import IGNORE_INDEX, tokenized_split

    for name in ("home_commands", "travel_qa", "chats", "tone_template"):
        project = runs[name]
        tokenizer = load_tokenizer(project / "models/base")
        rows = read_jsonl(project / "data/prepared/train.jsonl")
        dataset = tokenized_split(Path("train.jsonl"), rows, tokenizer, None)
        for row, ids, labels in zip(rows, dataset["input_ids"], dataset["labels"], strict=True):
            trained = "".join(text for text, is_trained in row["segments"] if is_trained)
            kept = [token for token, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
            assert tokenizer.decode(kept) == trained, name
        answers = [text for text, is_trained in rows[0]["segments"] if is_trained]
        assert len(answers) == (2 if name == "chats" else 1)
        assert eval_metrics(project)["int4"]["perplexity"] > 0
        assert json.loads((project / "models/int4/slmtune_task.json").read_text())["kind"] == "generation"


def test_olives_qa_shape_and_templates_reach_int4(runs):
    card = json.loads((runs["tone_template"] / "models/int4/slmtune_task.json").read_text())
    assert card["prompt_template"] == "### Text: {phrase}\n### The tone is:\n"
    result = slmtune(runs["tone_template"], "generate", "What a lovely day", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    qa = eval_metrics(runs["travel_qa"])
    assert qa["test_examples"] == 15 and qa["int4"]["chrf"] >= 0


def test_generate_streams_an_answer_and_fills_a_file(runs, tmp_path):
    project = runs["home_commands"]
    result = slmtune(project, "generate", "please switch off the kitchen lights at 7 pm")
    assert result.returncode == 0, result.stderr
    command = json.loads(result.stdout)
    assert command == {"action": "turn_off", "device": "light", "room": "kitchen", "time": "19:00"}
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "lock the front door", "id": 1}\n{"prompt": "start the dishwasher", "id": 2}\n')
    result = slmtune(project, "generate", "--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [1, 2]
    assert json.loads(rows[0]["response"])["device"] == "door_lock"
    sampled = [
        slmtune(project, "generate", "open the blinds", "--temperature", "0.7", "--seed", "1", "--max-new-tokens", "64")
        for _ in range(2)
    ]
    assert sampled[0].returncode == 0 and sampled[0].stdout == sampled[1].stdout  # seeded: the same draw twice


def test_chat_keeps_the_conversation(runs):
    chat = ["chat", "--model-path", "models/int4", "--max-new-tokens", "48"]  # the second turn sees the first
    result = slmtune(runs["home_commands"], *chat, stdin="open the garage door\nlock the front door\n")
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.splitlines() if line.startswith("assistant> ")]
    assert len(answers) == 2


def test_each_kind_refuses_the_other_kinds_command(runs):
    result = slmtune(runs["home_commands"], "classify", "hello")
    assert result.returncode == 1 and "fine-tuned for generation" in result.stderr
    assert "slmtune generate" in result.stderr
