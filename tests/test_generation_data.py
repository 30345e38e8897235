"""A generative task's rows become training text whose loss is on the answers only, in every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import params_with
from slmtune.generation_data import (
    generation_prompt,
    load_text_rows,
    prepared_row,
    reference,
    render_segments,
    template_columns,
)
from slmtune.tokenization import IGNORE_INDEX, tokenize_segments


def data_config(fmt: str, **changes):
    settings = {"kind": "generation", "format": fmt, "labels": [], "instruction": None, **changes}
    return params_with(data=settings).data


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def trained_text(tokenizer, segments) -> tuple[str, list[int]]:
    """The text of the tokens that carry loss, and the labels."""
    columns = tokenize_segments(tokenizer, [segments])
    ids, labels = columns["input_ids"][0], columns["labels"][0]
    kept = [token for token, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(ids, labels, strict=True))
    return tokenizer.decode(kept), labels


def test_question_and_best_answer_fields_with_a_system_message(tiny_tokenizer, tmp_path):
    """Olive's Q&A sample shape: the loss is on the answer and its end-of-turn token, nothing else."""
    data = data_config("fields", text_field="Question", label_field="Best Answer", system="Answer briefly.")
    path = write_rows(tmp_path / "qa.jsonl", [{"Question": "Can I fly with a kettle?", "Best Answer": "Yes, packed."}])
    (row,) = load_text_rows(path, data)
    segments = render_segments(tiny_tokenizer, row)
    assert "".join(text for text, _ in segments) == (
        "<|system|>\nAnswer briefly.<|end|>\n<|user|>\nCan I fly with a kettle?<|end|>\n"
        "<|assistant|>\nYes, packed.<|end|>\n"
    )
    text, labels = trained_text(tiny_tokenizer, segments)
    assert text == "Yes, packed.<|end|>"
    assert labels[0] == IGNORE_INDEX and labels[-1] == IGNORE_INDEX  # the closing newline carries no loss
    assert generation_prompt(tiny_tokenizer, row).endswith("<|assistant|>\n") and reference(row) == "Yes, packed."


def test_messages_with_two_assistant_turns_train_on_both_and_nothing_else(tiny_tokenizer, tmp_path):
    chat = [
        {"role": "system", "content": "You run the house."},
        {"role": "user", "content": "Lights on in the kitchen"},
        {"role": "assistant", "content": "kitchen light on"},
        {"role": "user", "content": "and the fan"},
        {"role": "assistant", "content": "fan on"},
    ]
    path = write_rows(tmp_path / "chats.jsonl", [{"messages": chat}])
    (row,) = load_text_rows(path, data_config("messages"))
    text, labels = trained_text(tiny_tokenizer, render_segments(tiny_tokenizer, row))
    assert text == "kitchen light on<|end|>fan on<|end|>"
    labelled = [index for index, label in enumerate(labels) if label != IGNORE_INDEX]
    assert labelled != list(range(labelled[0], labelled[-1] + 1))  # two separate spans: the user's turn between
    prepared = prepared_row(tiny_tokenizer, row)
    assert prepared["response"] == "fan on"
    assert (
        prepared["prompt"].endswith("and the fan<|end|>\n<|assistant|>\n") and "kitchen light on" in prepared["prompt"]
    )


def test_an_olive_text_template_trains_on_the_completion_and_eos(tiny_tokenizer, tmp_path):
    """Olive's `### Text: {phrase}\\n### The tone is:\\n{tone}`, cut where the answer starts."""
    data = data_config(
        "text_template", prompt_template="### Text: {phrase}\n### The tone is:\n", completion_template="{tone}"
    )
    path = write_rows(tmp_path / "tone.jsonl", [{"phrase": "What a lovely day", "tone": "joy"}])
    (row,) = load_text_rows(path, data)
    segments = render_segments(tiny_tokenizer, row)
    assert segments == [("### Text: What a lovely day\n### The tone is:\n", False), ("joy<|end|>", True)]
    text, _ = trained_text(tiny_tokenizer, segments)
    assert text == "joy<|end|>"
    assert generation_prompt(tiny_tokenizer, row) == "### Text: What a lovely day\n### The tone is:\n"


def test_template_columns_are_read_from_the_placeholders():
    assert template_columns("Q: {Question}\nA: {{literal}} {Best_Answer}") == ["Question", "Best_Answer"]


@pytest.mark.parametrize("template", ["{0}", "{a.b}", "{"])
def test_a_template_placeholder_that_is_no_column_name_is_refused(template):
    from slmtune.errors import DataError

    with pytest.raises(DataError, match="data template"):
        template_columns(template)
