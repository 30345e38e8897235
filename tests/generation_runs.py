"""The generative tasks' pipeline runs that several test modules share (conftest's `generation_runs`).

Four `dvc exp run`s, started in the background (background.py), each in a fresh copy of the project: the embedded
generative task (`data=home_commands`, its full training), and three small ones, one per other
format: Olive's Q&A shape (`data=travel_qa`, Question / Best Answer), chats with two assistant
turns (`format=messages`), and Olive's tone `text_template`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from helpers import sh

# The three small runs test each format's plumbing, not quality: trained for 2 epochs, their int4 model may
# trail merged by an answer or two of a few dozen, so their quantization gate is opened (the full
# home_commands run keeps the default gate, and test_gate checks the gate itself).
SMALL = [
    "train.num_train_epochs=2",
    "eval.latency_examples=2",
    "eval.latency_repetitions=1",
    "eval.max_int4_drop=1.0",
    "eval.max_int4_ppl_ratio=100.0",
]


def data_config(project: Path, name: str, max_new_tokens: int = 48, **changes) -> None:
    """conf/data/NAME.yaml: the home_commands config with `changes` to its data section."""
    config = yaml.safe_load((project / "conf/data/home_commands.yaml").read_text())
    config["data"] |= {"name": name, **changes}
    config["eval"]["max_new_tokens"] = max_new_tokens
    (project / f"conf/data/{name}.yaml").write_text("# @package _global_\n" + yaml.safe_dump(config, sort_keys=False))


def chats_file(project: Path) -> str:
    """150 two-request chats from the home_commands rows: two assistant turns each."""
    rows = [json.loads(line) for line in (project / "data/raw/home_commands.jsonl").read_text().splitlines()][:300]
    chats = []
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        turns = [("user", first["request"]), ("assistant", first["command"])]
        turns += [("user", second["request"]), ("assistant", second["command"])]
        chats.append({"messages": [{"role": role, "content": content} for role, content in turns]})
    (project / "data/raw/chats.jsonl").write_text("".join(json.dumps(chat) + "\n" for chat in chats))
    return "data/raw/chats.jsonl"


def tone_sample(project: Path) -> str:
    lines = (project / "data/raw/tone.jsonl").read_text().splitlines()[:240]
    (project / "data/raw/tone_sample.jsonl").write_text("\n".join(lines) + "\n")
    return "data/raw/tone_sample.jsonl"


def set_up(project: Path, name: str) -> list[str]:
    """The overrides of experiment `name`, after writing the data and config it needs into `project`."""
    if name == "home_commands":
        return ["data=home_commands"]
    if name == "travel_qa":
        return ["data=travel_qa", *SMALL]
    if name == "chats":
        data_config(project, "chats", format="messages", source=chats_file(project), system="You run the house.")
    else:  # Olive's tone example: text_template "### Text: {phrase}\n### The tone is:\n{tone}", cut at the answer
        templates = {"prompt_template": "### Text: {phrase}\n### The tone is:\n", "completion_template": "{tone}"}
        data_config(project, name, 4, format="text_template", source=tone_sample(project), **templates)
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-q", "-m", f"task {name}"], project)
    return [f"data={name}", *SMALL]


TASKS = ("home_commands", "travel_qa", "chats", "tone_template")


def experiment(project: Path, name: str) -> list[str]:
    """The `dvc exp run` command of task `name` in `project`, on one thread (the runs share two cores)."""
    overrides = [*set_up(project, name), "hw.num_threads=1"]
    return ["dvc", "exp", "run", "--name", name, *[arg for o in overrides for arg in ("-S", o)]]
