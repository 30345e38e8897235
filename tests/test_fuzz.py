"""Fuzzed loaders: arbitrary bytes and arbitrary JSON either load or raise DataError, never anything else.

The data loader (`prepare`'s input) and the reader of `slmtune classify --input` are fed
random files (hypothesis). What loads must be fit for the next step: labels among the
configured ones, non-empty stripped phrases, rows that can be written back as UTF-8 JSON.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slmtune.cli import read_phrase_rows
from slmtune.data import load_examples, stratified_split
from slmtune.errors import DataError

LABELS = ["sad", "joy", "fear", "surprise"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any text, lone surrogates included (JSON can escape them: "\ud800").
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
label_like = st.sampled_from([*LABELS, "Joy ", " SAD", "anger", "", "  ", "surprise\n"])
scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text | label_like
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Rows near the real format: the right keys (or near misses) with values of any kind.
rows = st.dictionaries(
    st.sampled_from(["phrase", "tone", "text", "Phrase", "label", ""]), json_values | label_like, max_size=3
)
EDGE_CASES = [
    b"",
    b"\xef\xbb\xbf",
    b"[" * 100_000,
    b'{"phrase": ' + b"1" * 5000 + b', "tone": "joy"}',
    b'{"phrase": "a\\ud800b", "tone": "joy"}',
    b'{"phrase": "line\xe2\x80\xa8separator", "tone": "joy"}',
    b'{"phrase": "nul\x00", "tone": "joy"}\r\n',
    b'{"phrase": NaN, "tone": "joy"}',
    b'phrase,tone\n"unclosed,joy\n',
    b"\xff\xfe{\x00}\x00",
]


def load_or_refuse(path: Path) -> None:
    """Load `path` as the data set; a DataError is a fine answer, anything else fails the test."""
    try:
        examples = load_examples(path, LABELS)
    except DataError:
        return
    assert examples
    for e in examples:
        assert e.label in LABELS
        assert e.phrase and e.phrase == e.phrase.strip()
        e.phrase.encode("utf-8")
    with contextlib.suppress(DataError):
        stratified_split(examples, 0.1, 0.15, seed=0, labels=LABELS, source=path)


def classify_rows_or_refuse(path: Path) -> None:
    """Read `path` as classify's --input; what loads must have a phrase and write back as UTF-8 JSON."""
    try:
        loaded = read_phrase_rows(path, "phrase")
    except DataError:
        return
    assert loaded
    for row in loaded:
        assert isinstance(row["phrase"], str) and row["phrase"].strip()
        json.dumps({**row, "prediction": "joy"}, ensure_ascii=False).encode("utf-8")


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@FUZZ
@given(content=st.binary(max_size=300))
@example(content=b'{"phrase": "ok", "tone": "joy"}\n')
def test_data_loader_takes_arbitrary_bytes(tmp_path, suffix, content):
    load_or_refuse(write(tmp_path, f"tone{suffix}", content))


@pytest.mark.parametrize("content", EDGE_CASES, ids=range(len(EDGE_CASES)))
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_data_loader_takes_edge_cases(tmp_path, suffix, content):
    load_or_refuse(write(tmp_path, f"tone{suffix}", content))


@FUZZ
@given(lines=st.lists(json_values | rows, max_size=8))
def test_data_loader_takes_arbitrary_json_lines(tmp_path, lines):
    text = "".join(json.dumps(line) + "\n" for line in lines)
    load_or_refuse(write(tmp_path, "tone.jsonl", text.encode()))


@FUZZ
@given(document=json_values | st.lists(rows, max_size=8) | st.fixed_dictionaries({"data": st.lists(rows)}))
def test_data_loader_takes_an_arbitrary_json_document(tmp_path, document):
    load_or_refuse(write(tmp_path, "tone.json", json.dumps(document).encode()))


@FUZZ
@given(
    header=st.lists(st.sampled_from(["phrase", "tone", "text", " tone ", ""]), max_size=3),
    table=st.lists(st.lists(any_text | label_like, max_size=4), max_size=8),
)
def test_data_loader_takes_arbitrary_csv_tables(tmp_path, header, table):
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *table])
    load_or_refuse(write(tmp_path, "tone.csv", buffer.getvalue().encode("utf-8", "surrogatepass")))


@FUZZ
@given(content=st.binary(max_size=300))
@example(content=b"[" * 100_000)
@example(content=b'{"phrase": "a\\udfffb"}')
def test_classify_input_takes_arbitrary_bytes(tmp_path, content):
    classify_rows_or_refuse(write(tmp_path, "in.jsonl", content))


@FUZZ
@given(lines=st.lists(json_values | rows, max_size=8))
def test_classify_input_takes_arbitrary_json_lines(tmp_path, lines):
    text = "".join(json.dumps(line) + "\n" for line in lines)
    classify_rows_or_refuse(write(tmp_path, "in.jsonl", text.encode()))
