"""The experiments that test_experiments reads: QLoRA, DoRA, another task and the LoRA-only profile, each
a `dvc exp run` in a copy of the reproduced tone project, started in the background (background.py).

They run at once, one thread each; the thread count changes only the rounding, not what is
tested. Their latency figures are not read, so each measures latency on two phrases once.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

EXPERIMENTS = ("qlora", "dora", "polarity", "lora_only")
# The LoRA-only profile (docs/adapters.md): a pretrained tiny base, no modules_to_save, an exportable adapter.
LORA_ONLY = ["model=tiny_phi3_lm", "train.r=64", "train.lora_alpha=64", "train.num_train_epochs=15"]
POLARITY = {"sad": "negative", "fear": "negative", "joy": "positive", "surprise": "positive"}
SHARED = ["hw.num_threads=1", "eval.latency_examples=2", "eval.latency_repetitions=1"]


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


def overrides(name: str, project: Path, folder: Path) -> list[str]:
    """The `-S` overrides of experiment `name` (writing what it needs into `folder`)."""
    if name == "polarity":
        own = polarity_overrides(project, folder)
    else:
        own = LORA_ONLY if name == "lora_only" else [f"train={name}"]
    return [*own, *SHARED]
