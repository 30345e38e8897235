"""Training rows become the ids and labels trl itself would build: loss on the completion only."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmtune.config import compose
from slmtune.data import read_jsonl
from slmtune.errors import DataError
from slmtune.tokenization import IGNORE_INDEX, check_has_labels, common_prefix_length, tokenized_split


def trl_prepared(pipeline_run: Path, rows: list[dict]) -> dict[str, list]:
    """The ids and labels trl's SFTTrainer builds from prompt/completion rows through its own preparation."""
    from datasets import Dataset
    from trl import SFTTrainer

    from slmtune.models import load_tokenizer
    from slmtune.training import load_for_training, lora_config, sft_config

    params = compose()
    args = sft_config(params, pipeline_run / "trl-check")
    args.dataset_kwargs = None  # trl prepares the rows itself
    tokenizer = load_tokenizer(pipeline_run / "models/base")
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    trainer = SFTTrainer(
        model=load_for_training(params, pipeline_run / "models/base"),
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(params),
    )
    return trainer.train_dataset.to_dict()


def test_ids_and_labels_equal_trls_own_preparation(pipeline_run):
    """Every train and val row: the same input_ids and the same -100 mask as trl's five map passes."""
    from slmtune.models import load_tokenizer

    tokenizer = load_tokenizer(pipeline_run / "models/base")
    rows = read_jsonl(pipeline_run / "data/prepared/train.jsonl") + read_jsonl(pipeline_run / "data/prepared/val.jsonl")
    ours = tokenized_split(Path("train.jsonl"), rows, tokenizer, compose().model.max_length).to_dict()
    theirs = trl_prepared(pipeline_run, rows)
    assert len(ours["input_ids"]) == len(rows) == len(theirs["input_ids"])
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["labels"] == theirs["labels"]
    first = ours["labels"][0]
    assert first[0] == IGNORE_INDEX and first[-1] == tokenizer.eos_token_id  # prompt masked, EOS learned


def test_the_completion_starts_where_the_ids_diverge():
    assert common_prefix_length([1, 2, 3], [1, 2, 3, 4]) == 3
    assert common_prefix_length([1, 2, 9], [1, 2, 3, 4]) == 2
    assert common_prefix_length([], [5]) == 0


def test_a_row_longer_than_max_length_is_refused_with_its_line(tiny_tokenizer):
    rows = [{"prompt": "<|user|>\nhi<|end|>\n<|assistant|>\n", "completion": "joy<|end|>"}] * 2
    rows.append({"prompt": "<|user|>\n" + "sad " * 200 + "<|end|>\n<|assistant|>\n", "completion": "sad<|end|>"})
    with pytest.raises(DataError, match=r"split\.jsonl:3: \d+ tokens, more than model\.max_length=64"):
        tokenized_split(Path("split.jsonl"), rows, tiny_tokenizer, 64)


def test_a_row_with_no_label_is_refused_with_its_line():
    with pytest.raises(DataError, match=r"split\.jsonl:2: the completion adds no token"):
        check_has_labels(Path("split.jsonl"), [[IGNORE_INDEX, 5], [IGNORE_INDEX, IGNORE_INDEX]])
