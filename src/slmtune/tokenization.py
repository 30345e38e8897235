"""Training rows as token ids and labels: the loss on the completion only, -100 everywhere else.

A prepared row is a list of `[text, trained]` segments (a prompt and its completion, or a chat's turns).
The joined text is tokenized whole, in one batched call of the fast tokenizer, and a token carries
loss when it starts inside a trained segment. trl's SFTTrainer could tokenize prompt/completion rows
itself, but one row at a time through five `datasets.map` passes (1.8 s of the tiny default's
train_lora), and it cannot mask a chat's turns without a `{% generation %}` template; the trainer is
told to skip its preparation. For prompt/completion rows the result equals trl's, row for row, with
its rules (EOS appended to a completion that lacks it): `tests/test_tokenization.py` checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmtune.errors import DataError, ModelError

IGNORE_INDEX = -100  # the label of a token that carries no loss (PyTorch's cross-entropy default)


def common_prefix_length(ids: Sequence, other: Sequence) -> int:
    """How many leading items (ids, characters) `ids` and `other` share: where a completion starts."""
    for index, (a, b) in enumerate(zip(ids, other, strict=False)):
        if a != b:
            return index
    return min(len(ids), len(other))


def with_eos(completion: str, eos_token: str | None) -> str:
    """The completion ending in the tokenizer's EOS token, as trl trains it (so generation learns to stop)."""
    if eos_token and not completion.endswith(eos_token):
        return completion + eos_token
    return completion


def tokenize_segments(tokenizer, rows: Sequence[Sequence[Sequence]]) -> dict[str, list[list[int]]]:
    """`input_ids` of each row's joined segments (`[text, trained]` pairs), `labels` -100 off the trained text.

    The text is tokenized whole, as generation sees it; a token carries loss when it starts inside a
    trained segment (character offsets from the fast tokenizer).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"{type(tokenizer).__name__} is a slow (Python) tokenizer; masking the loss by turn needs the fast "
            "one (tokenizer.json); convert the tokenizer or use a model that ships one"
        )
    texts = ["".join(text for text, _ in segments) for segments in rows]
    encoded = tokenizer(texts, return_offsets_mapping=True)
    labels = []
    for segments, ids, offsets in zip(rows, encoded["input_ids"], encoded["offset_mapping"], strict=True):
        trained = trained_spans(segments)
        starts = [start for start, _ in offsets]
        labels.append([t if _inside(at, trained) else IGNORE_INDEX for t, at in zip(ids, starts, strict=True)])
    return {"input_ids": [list(ids) for ids in encoded["input_ids"]], "labels": labels}


def trained_spans(segments: Sequence[Sequence]) -> list[tuple[int, int]]:
    """Character spans of the trained segments in the joined text."""
    spans, position = [], 0
    for text, trained in segments:
        if trained:
            spans.append((position, position + len(text)))
        position += len(text)
    return spans


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(begin <= position < end for begin, end in spans)


def row_segments(row: dict[str, Any], eos_token: str | None) -> list:
    """A prepared row's `[text, trained]` pieces: a generative task's segments, or prompt then completion."""
    if "segments" in row:  # slmtune.generation_data wrote them
        return row["segments"]
    return [[row["prompt"], False], [with_eos(row["completion"], eos_token), True]]


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
    """A datasets.Dataset of `input_ids` and `labels` for a prepared split (prompt/completion or segments)."""
    from datasets import Dataset

    columns = tokenize_segments(tokenizer, [row_segments(row, tokenizer.eos_token) for row in rows])
    check_lengths(path, columns["input_ids"], max_length)
    check_has_labels(path, columns["labels"])
    return Dataset.from_dict(columns)
