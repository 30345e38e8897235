"""Other methods and another task, end to end: QLoRA, DoRA and a polarity task from a CSV file, each an
experiment on the reproduced tone project (experiments.py; run in the background, background.py)."""

from __future__ import annotations

import json

import pytest

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
