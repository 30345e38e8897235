"""Prompt templating with the tiny tokenizer, and mapping generated text to labels."""

from __future__ import annotations

from slmtune.prompts import Task, build_task, label_from_text, render_prompt

INSTRUCTION = "Classify the tone of this phrase as sad, joy, fear or surprise."
LABELS = ["sad", "joy", "fear", "surprise"]


def test_prompt_uses_the_phi3_chat_format(tiny_tokenizer):
    prompt = render_prompt(tiny_tokenizer, INSTRUCTION, "cricket is a wonderful sport!")
    assert prompt == f"<|user|>\n{INSTRUCTION}\ncricket is a wonderful sport!<|end|>\n<|assistant|>\n"


def test_each_label_completes_the_assistant_turn(tiny_tokenizer):
    task = build_task(tiny_tokenizer, INSTRUCTION, LABELS)
    assert task.completions == {label: f"{label}<|end|>" for label in LABELS}


def test_labels_are_single_tokens_in_the_tiny_tokenizer(tiny_tokenizer):
    for label in LABELS:
        assert tiny_tokenizer.tokenize(f"{label}<|end|>") == [label, "<|end|>"]


def test_task_card_round_trips(tmp_path, tiny_tokenizer):
    task = build_task(tiny_tokenizer, INSTRUCTION, LABELS)
    task.save(tmp_path)
    assert Task.load(tmp_path) == task


def test_generated_text_maps_to_a_label():
    assert label_from_text(" Joy ", LABELS) == "joy"
    assert label_from_text("fear.", LABELS) == "fear"
    assert label_from_text("anger", LABELS) == "other"
    assert label_from_text("", LABELS) == "other"
