"""Training rows as token ids and labels: the loss on the completion only, -100 everywhere else.

trl's SFTTrainer can tokenize prompt/completion rows itself, but it does so one row at a time through
five `datasets.map` passes (EOS, tokenize, labels, truncate, filter), 1.8 s of the tiny default's
train_lora for 2,000 rows. Here the same ids and labels come from one batched call of the fast
tokenizer, with trl's own rules (EOS appended to a completion that lacks it, the completion starting
where the tokenized prompt and prompt+completion diverge), and the trainer is told to skip its
preparation. `tests/test_tokenization.py` checks the result equals trl's, row for row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmtune.errors import DataError

IGNORE_INDEX = -100  # the label of a token that carries no loss (PyTorch's cross-entropy default)


def common_prefix_length(ids: Sequence[int], other: Sequence[int]) -> int:
    """How many leading ids `ids` and `other` share (where a completion starts, as trl decides it)."""
    for index, (a, b) in enumerate(zip(ids, other, strict=False)):
        if a != b:
            return index
    return min(len(ids), len(other))


def with_eos(completion: str, eos_token: str | None) -> str:
    """The completion ending in the tokenizer's EOS token, as trl trains it (so generation learns to stop)."""
    if eos_token and not completion.endswith(eos_token):
        return completion + eos_token
    return completion


def tokenize_prompt_completion(
    tokenizer, prompts: Sequence[str], completions: Sequence[str]
) -> dict[str, list[list[int]]]:
    """`input_ids` of prompt+completion and `labels` that are -100 on the prompt, for every row."""
    completions = [with_eos(completion, tokenizer.eos_token) for completion in completions]
    prompt_ids = tokenizer(list(prompts))["input_ids"]
    full_ids = tokenizer([p + c for p, c in zip(prompts, completions, strict=True)])["input_ids"]
    labels = []
    for prompt, full in zip(prompt_ids, full_ids, strict=True):
        start = common_prefix_length(prompt, full)
        labels.append([IGNORE_INDEX] * start + list(full[start:]))
    return {"input_ids": [list(ids) for ids in full_ids], "labels": labels}


def check_lengths(path: Path, input_ids: Sequence[Sequence[int]], max_length: int | None) -> None:
    """Refuse a row longer than `max_length` tokens (prepare refuses them; a hand-edited split may not)."""
    if max_length is None:
        return
    for line, ids in enumerate(input_ids, start=1):
        if len(ids) > max_length:
            raise DataError(
                f"{path}:{line}: {len(ids)} tokens, more than model.max_length={max_length}; "
                "rerun prepare (dvc repro prepare), which refuses such rows, or raise model.max_length"
            )


def check_has_labels(path: Path, labels: Sequence[Sequence[int]]) -> None:
    """Refuse a row whose completion tokenizes to nothing: it would carry no loss."""
    for line, row in enumerate(labels, start=1):
        if all(label == IGNORE_INDEX for label in row):
            raise DataError(f"{path}:{line}: the completion adds no token to the prompt; nothing to train on")


def tokenized_split(path: Path, rows: Sequence[dict[str, Any]], tokenizer, max_length: int | None):
    """A datasets.Dataset of `input_ids` and `labels` for a prepared split's prompt/completion rows."""
    from datasets import Dataset

    columns = tokenize_prompt_completion(tokenizer, [r["prompt"] for r in rows], [r["completion"] for r in rows])
    check_lengths(path, columns["input_ids"], max_length)
    check_has_labels(path, columns["labels"])
    return Dataset.from_dict(columns)
