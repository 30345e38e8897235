"""Crash safety: SIGKILL any stage mid-work; no partial artifact appears, and the next `dvc repro` completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import copy_project, params_file, sh, tool_env

pytestmark = pytest.mark.slow

# What a complete output holds: a folder that lacks any of these was left half-written.
COMPLETE = {
    "data/prepared": ["train.jsonl", "val.jsonl", "test.jsonl"],
    "models/base": ["config.json", "model.safetensors", "tokenizer.json", "slmtune_task.json"],
    "models/adapter": ["adapter_config.json", "adapter_model.safetensors", "slmtune_task.json"],
    "models/merged": ["config.json", "model.safetensors", "tokenizer.json", "slmtune_task.json"],
    "models/int4": ["genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json", "slmtune_task.json"],
    "dvclive/train": ["metrics.json"],
    "plots/confusion": ["base.json", "adapter.json", "merged.json", "int4.json"],
    "plots/answers": ["base.json", "adapter.json", "merged.json", "int4.json"],
}
JSON_OUTPUTS = ["metrics/train.json", "metrics/eval.json", "plots/artifacts.json", "plots/generation.json"]
EPOCHS = 2.0  # a shorter training than the default's 5 epochs: enough to be killed, resumed and accurate
# Seconds after a stage's start line (train_lora: its first checkpoint) at which it is still working.
KILL_AFTER = {"prepare": 1.0, "train_lora": 1.0, "merge": 0.0, "build_int4": 2.0, "eval": 3.0}
# The merge writes its folder in a few milliseconds after a second of imports: it is run in short
# slices (SIGCONT, a millisecond, SIGSTOP) until its temporary output folder has files, then killed.
STEP_UNTIL = {"merge": "models/.merged.*.tmp/*"}
SLICE_SECONDS = 0.001


def assert_no_partial_output(project: Path) -> None:
    for folder, files in COMPLETE.items():
        path = project / folder
        if path.exists():
            missing = [name for name in files if not (path / name).is_file()]
            assert missing == [], f"{folder} is incomplete after the kill: missing {missing}"
    for name in JSON_OUTPUTS:
        path = project / name
        if path.exists():
            json.loads(path.read_text())  # whole, or not there at all


def step_until(process: subprocess.Popen, project: Path, pattern: str, deadline: float) -> None:
    """Run the process group in slices of SLICE_SECONDS until `pattern` matches; leave it stopped."""
    os.killpg(process.pid, signal.SIGSTOP)
    while not list(project.glob(pattern)):
        assert process.poll() is None and time.monotonic() < deadline
        os.killpg(process.pid, signal.SIGCONT)
        time.sleep(SLICE_SECONDS)
        os.killpg(process.pid, signal.SIGSTOP)


def kill_during(project: Path, stage: str, log: Path) -> None:
    """Start `dvc repro`, SIGKILL its whole process group while `stage` is working."""
    with log.open("w") as out:
        process = subprocess.Popen(
            ["dvc", "repro"], cwd=project, env=tool_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    marker = f"stage {stage}: start"
    deadline = time.monotonic() + 600
    while marker not in log.read_text():
        assert process.poll() is None, f"dvc repro ended before {stage} started:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if stage == "train_lora":  # kill between checkpoints, so that the next run resumes
        while not list(project.glob(".slmtune-cache/train_lora/*/checkpoint-*/trainer_state.json")):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    if stage in STEP_UNTIL:
        step_until(process, project, STEP_UNTIL[stage], deadline)
    time.sleep(KILL_AFTER[stage])
    assert f"stage {stage}: done" not in log.read_text(), f"{stage} finished before the kill"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_sigkill_in_every_stage_leaves_no_partial_output(tmp_path):
    project = copy_project(tmp_path / "project")
    params_file(project / "params.yaml", [f"train.num_train_epochs={EPOCHS}"])
    sh(["git", "commit", "-qam", "shorter training"], project)
    for stage in KILL_AFTER:
        kill_during(project, stage, tmp_path / f"{stage}.log")
        assert_no_partial_output(project)
    assert "resuming from" in (tmp_path / "merge.log").read_text()  # the run after the train_lora kill
    sh(["dvc", "repro"], project)
    assert_no_partial_output(project)
    for folder in COMPLETE:
        assert (project / folder).is_dir(), folder
    leftovers = [str(p.relative_to(project)) for p in project.rglob(".*.tmp")]
    assert leftovers == []
    assert json.loads((project / "metrics/eval.json").read_text())["int4"]["accuracy"] >= 0.80
    assert "up to date" in sh(["dvc", "status"], project).stdout
