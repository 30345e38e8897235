"""The data set, its validation, and the deterministic stratified split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from helpers import params_file
from slmtune.config import compose
from slmtune.data import load_examples, normalise, read_jsonl, stratified_split
from slmtune.errors import DataError
from slmtune.stages.prepare import prepare

LABELS = ["sad", "joy", "fear", "surprise"]
GOOD = '{"phrase": "I miss you so much", "tone": "sad"}'


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


BAD_JSONL = {
    "missing field": ('{"phrase": "hello there"}', 2, "missing field 'tone'"),
    "missing phrase": ('{"tone": "joy"}', 2, "missing field 'phrase'"),
    "empty phrase": ('{"phrase": "   ", "tone": "joy"}', 2, "empty phrase"),
    "unknown label": ('{"phrase": "what a day", "tone": "anger"}', 2, "unknown label 'anger'"),
    "invalid json": ('{"phrase": "oops", "tone": ', 2, "invalid JSON"),
    "not an object": ('["a list", "joy"]', 2, "expected an object"),
    "non-string phrase": ('{"phrase": 42, "tone": "joy"}', 2, "must be a string"),
    "null label": ('{"phrase": "hmm", "tone": null}', 2, "missing field 'tone'"),
    "duplicate": ('{"phrase": "  i MISS you   so much ", "tone": "sad"}', 2, "duplicate phrase"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL))
def test_bad_jsonl_row_is_reported_with_file_and_line(tmp_path, case):
    row, line, message = BAD_JSONL[case]
    path = write(tmp_path, "tone.jsonl", GOOD + "\n" + row + "\n")
    with pytest.raises(DataError) as caught:
        load_examples(path, LABELS)
    assert f"{path}:{line}" in str(caught.value)
    assert message in str(caught.value)


def test_bad_csv_row_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, "tone.csv", "phrase,tone\nI miss you,sad\nso scary,terror\n")
    with pytest.raises(DataError, match=rf"{path}:3: unknown label"):
        load_examples(path, LABELS)


def test_unsupported_file_type_is_refused(tmp_path):
    with pytest.raises(DataError, match="unsupported file type"):
        load_examples(write(tmp_path, "tone.txt", "sad\n"), LABELS)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_examples(tmp_path / "absent.jsonl", LABELS)


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "tone.jsonl"
    path.write_bytes(b'{"phrase": "caf\xe9", "tone": "joy"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_examples(path, LABELS)


def test_json_csv_and_jsonl_load_the_same_rows(tmp_path):
    rows = [{"phrase": "I miss you", "tone": "sad"}, {"phrase": "Best day ever!", "tone": "joy"}]
    jsonl = write(tmp_path, "a.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    array = write(tmp_path, "b.json", json.dumps(rows))
    table = write(tmp_path, "c.csv", "phrase,tone\nI miss you,sad\nBest day ever!,joy\n")
    loaded = [[(e.phrase, e.label) for e in load_examples(p, LABELS)] for p in (jsonl, array, table)]
    assert loaded[0] == loaded[1] == loaded[2] == [("I miss you", "sad"), ("Best day ever!", "joy")]


def test_project_data_set_meets_its_card(repo_root):
    examples = load_examples(repo_root / "data/raw/tone.jsonl", LABELS)
    assert len(examples) >= 800
    shares = {label: count / len(examples) for label, count in Counter(e.label for e in examples).items()}
    assert set(shares) == set(LABELS)
    assert all(0.20 <= share <= 0.30 for share in shares.values()), shares
    assert len({normalise(e.phrase) for e in examples}) == len(examples)


def test_split_is_stratified_disjoint_and_seeded(repo_root):
    examples = load_examples(repo_root / "data/raw/tone.jsonl", LABELS)
    splits = stratified_split(examples, 0.1, 0.15, seed=42)
    assert sum(len(rows) for rows in splits.values()) == len(examples)
    keys = {name: {normalise(e.phrase) for e in rows} for name, rows in splits.items()}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    for rows in splits.values():
        shares = Counter(e.label for e in rows)
        assert max(shares.values()) - min(shares.values()) <= 2
    again = stratified_split(examples, 0.1, 0.15, seed=42)
    assert [e.phrase for e in again["test"]] == [e.phrase for e in splits["test"]]
    other = stratified_split(examples, 0.1, 0.15, seed=7)
    assert [e.phrase for e in other["test"]] != [e.phrase for e in splits["test"]]


def test_prepare_stops_on_bad_input_and_writes_nothing(tmp_path):
    source = write(tmp_path, "tone.jsonl", GOOD + '\n{"phrase": "eek", "tone": "scared"}\n')
    params = compose([f"data.source={source}"])
    out_data, out_model = tmp_path / "prepared", tmp_path / "base"
    with pytest.raises(DataError, match=rf"{source}:2"):
        prepare(params, out_data, out_model)
    assert not out_data.exists() and not out_model.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.jsonl"]


def test_prepare_stage_exits_non_zero_with_the_line_named(tmp_path):
    import subprocess
    import sys

    source = write(tmp_path, "tone.jsonl", GOOD + "\n{broken\n")
    params_path = params_file(tmp_path / "params.yaml", [f"data.source={source}"])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "slmtune.stages.prepare",
            "--params",
            str(params_path),
            "--out-data",
            str(tmp_path / "prepared"),
            "--out-model",
            str(tmp_path / "base"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{source}:2: invalid JSON" in result.stderr
    assert not (tmp_path / "prepared").exists()


def test_read_jsonl_round_trips_prepared_rows(tmp_path):
    from slmtune.data import write_jsonl

    rows = [{"phrase": "ça va? 😊", "label": "joy"}]
    write_jsonl(tmp_path / "x.jsonl", rows)
    assert read_jsonl(tmp_path / "x.jsonl") == rows
