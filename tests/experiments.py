"""The experiments that test_experiments reads: QLoRA, DoRA, another task and the LoRA-only profile, each
a `dvc exp run` in a copy of the reproduced tone project, started in the background (background.py);
and the polarity task LoRA-only on the LoRA-only profile's own base (a second adapter for that base).

They run at once, one thread each; the thread count changes only the rounding, not what is
tested. Their latency figures are not read, so each measures latency on two phrases once.
"""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

EXPERIMENTS = ("qlora", "dora", "polarity", "lora_only", "polarity_lora")
# The LoRA-only profile (docs/adapters.md): a pretrained tiny base, no modules_to_save, an exportable adapter.
LORA_ONLY = ["model=tiny_phi3_lm", "train.r=64", "train.lora_alpha=64", "train.num_train_epochs=15"]
POLARITY = {"sad": "negative", "fear": "negative", "joy": "positive", "surprise": "positive"}
SHARED = ["hw.num_threads=1", "eval.latency_examples=2", "eval.latency_repetitions=1"]
# Polarity as a second adapter of the LoRA-only base: on that base (the tone task's pretrained tiny base,
# made again here: prepare is deterministic) at half the learning rate. Measured (int4 test accuracy, 342
# phrases): 0.851 at 1e-3; 0.787 at the default 2e-3, 0.702 at 4e-3, 0.737 with 30 epochs at 2e-3.
POLARITY_LORA = ["train.r=64", "train.lora_alpha=64", "train.num_train_epochs=15", "train.learning_rate=1e-3"]


def polarity_overrides(project: Path, folder: Path) -> list[str]:
    """Another task (polarity): its own CSV file, field names, labels and instruction, all set by overrides."""
    rows = [json.loads(line) for line in (project / "data/raw/tone.jsonl").read_text().splitlines()]
    source = folder / "polarity.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([row["phrase"], POLARITY[row["tone"]]] for row in rows)
    overrides = [f"data.source={source}", "data.text_field=text", "data.label_field=label"]
    return [*overrides, "data.labels=[negative,positive]", "data.instruction='Is this phrase positive or negative?'"]


def command(name: str, project: Path, folder: Path) -> list[str]:
    """The command that runs experiment `name` in `project` (writing what it needs into `folder`)."""
    settings = [arg for override in overrides(name, project, folder) for arg in ("-S", override)]
    run = ["dvc", "exp", "run", "--name", name, *settings]
    if name != "polarity_lora":
        return run
    shared = folder / "shared_base"  # the LoRA-only base: the tone task's prepare under model=tiny_phi3_lm
    base_params = folder / "shared_base.yaml"
    steps = [
        ["slmtune", "params", "model=tiny_phi3_lm", "hw.num_threads=1", "--output", str(base_params)],
        [
            "python",
            "-m",
            "slmtune.stages.prepare",
            "--params",
            str(base_params),
            "--out-data",
            str(folder / "shared_data"),
            "--out-model",
            str(shared),
        ],
        [*run, "-S", "model=tiny_phi3_lm", "-S", "model.source=local", "-S", f"model.local_path={shared}"],
    ]
    return ["sh", "-c", " && ".join(shlex.join(step) for step in steps)]


def overrides(name: str, project: Path, folder: Path) -> list[str]:
    """The `-S` overrides of experiment `name` (writing what it needs into `folder`)."""
    if name == "polarity":
        own = polarity_overrides(project, folder)
    elif name == "polarity_lora":
        own = [*polarity_overrides(project, folder), *POLARITY_LORA]
    else:
        own = LORA_ONLY if name == "lora_only" else [f"train={name}"]
    return [*own, *SHARED]
