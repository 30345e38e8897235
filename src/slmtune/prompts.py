"""Prompts: render a phrase with the model's chat template, and each label as its completion."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmtune.atomic import atomic_write_text
from slmtune.config.schema import KINDS as TASK_KINDS
from slmtune.errors import ModelError

TASK_FILE = "slmtune_task.json"


@dataclass
class Task:
    """What a model folder was fine-tuned for: travels with every model artifact.

    `kind` is classification (pick one of `labels`; `completions` holds each label's answer text) or
    generation (free text; `system` and `prompt_template` say how a prompt is rendered, as in training).
    """

    instruction: str | None
    labels: list[str] = field(default_factory=list)
    completions: dict[str, str] = field(default_factory=dict)
    kind: str = "classification"  # cards written before generation existed are classifiers
    system: str | None = None
    prompt_template: str | None = None

    @property
    def generative(self) -> bool:
        return self.kind == "generation"

    def save(self, folder: Path | str) -> None:
        atomic_write_text(Path(folder) / TASK_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path | str) -> Task:
        path = Path(folder) / TASK_FILE
        if not path.is_file():
            raise ModelError(f"{folder}: no {TASK_FILE}; is this a model folder written by slmtune?")
        try:
            task = cls(**json.loads(path.read_text(encoding="utf-8")))
            complete = task.kind == "generation" or (
                bool(task.labels) and all(label in task.completions for label in task.labels)
            )
        except (ValueError, TypeError) as err:
            raise ModelError(f"{path}: not a valid task card ({err}); restore the folder or rerun its stage") from None
        if task.kind not in TASK_KINDS:
            raise ModelError(f"{path}: unknown task kind {task.kind!r} (expected one of {list(TASK_KINDS)})")
        if not complete:
            raise ModelError(f"{path}: the task card lacks labels or their completions; rerun the stage that wrote it")
        return task


def user_message(instruction: str, phrase: str) -> str:
    """The user turn: the instruction, then the phrase on its own line."""
    return f"{instruction}\n{phrase}"


def render_prompt(tokenizer: Any, instruction: str, phrase: str) -> str:
    """The text the model sees before it answers (chat template with the generation prompt)."""
    messages = [{"role": "user", "content": user_message(instruction, phrase)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def completion_for(tokenizer: Any, instruction: str, label: str) -> str:
    """The assistant turn for `label` as the chat template writes it (e.g. 'joy<|end|>')."""
    probe = "x"
    prompt = render_prompt(tokenizer, instruction, probe)
    messages = [
        {"role": "user", "content": user_message(instruction, probe)},
        {"role": "assistant", "content": label},
    ]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ModelError("the chat template renders the prompt differently with and without an answer")
    return full[len(prompt) :].rstrip()


def build_task(tokenizer: Any, instruction: str, labels: list[str]) -> Task:
    """The task card for a tokenizer: instruction, labels and each label's completion text."""
    completions = {label: completion_for(tokenizer, instruction, label) for label in labels}
    return Task(instruction=instruction, labels=list(labels), completions=completions)


def prompt_lengths(tokenizer: Any, prompts: list[str], completions: list[str]) -> list[int]:
    """Tokens in each prompt followed by its longest completion: what training and scoring feed the model."""
    if not prompts:
        return []
    texts = [prompt + completion for prompt in prompts for completion in completions]
    ids = tokenizer(texts)["input_ids"]
    width = len(completions)
    return [max(len(row) for row in ids[i * width : (i + 1) * width]) for i in range(len(prompts))]


def label_from_text(text: str, labels: list[str]) -> str:
    """Map generated text to a label: exact (case-folded) match first, then a leading match."""
    answer = text.strip().casefold()
    for label in labels:
        if answer == label.casefold():
            return label
    for label in labels:
        if answer.startswith(label.casefold()):
            return label
    return "other"
