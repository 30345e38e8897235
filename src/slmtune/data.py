"""The labelled data: load (json, jsonl, csv), validate, split, read and write jsonl."""

from __future__ import annotations

import csv
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmtune.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    """One labelled phrase and where it came from."""

    phrase: str
    label: str
    line: int


def normalise(phrase: str) -> str:
    """Fold case and whitespace, the key under which two phrases count as duplicates."""
    return re.sub(r"\s+", " ", phrase).strip().casefold()


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: invalid JSON: {err.msg} (column {err.colno})") from None


def _json_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        document = document["data"]
    if not isinstance(document, list):
        raise DataError(f'{path}: expected a JSON array of objects (or {{"data": [...]}})')
    # A JSON array has no line per record; number the records from 1 instead.
    yield from enumerate(document, start=1)


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(text.splitlines())
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: invalid CSV: {err}") from None


READERS = {".jsonl": _jsonl_records, ".json": _json_records, ".csv": _csv_records}


def read_records(path: Path | str) -> Iterator[tuple[int, Any]]:
    """Yield (line, record) pairs from a json, jsonl or csv file."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'; use .jsonl, .json or .csv")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    yield from reader(path, text)


def load_examples(
    path: Path | str, labels: Iterable[str], text_field: str = "phrase", label_field: str = "tone"
) -> list[Example]:
    """Load and validate every record: fields present, phrase non-empty, label known, no duplicates."""
    path = Path(path)
    allowed = list(labels)
    examples: list[Example] = []
    first_seen: dict[str, int] = {}
    for line, record in read_records(path):
        where = f"{path}:{line}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with '{text_field}' and '{label_field}'")
        for key in (text_field, label_field):
            if key not in record or record[key] is None:
                raise DataError(f"{where}: missing field '{key}'")
            if not isinstance(record[key], str):
                raise DataError(f"{where}: field '{key}' must be a string, got {type(record[key]).__name__}")
        phrase, label = record[text_field].strip(), record[label_field].strip()
        if not phrase:
            raise DataError(f"{where}: empty phrase in field '{text_field}'")
        if label not in allowed:
            raise DataError(f"{where}: unknown label {label!r}; expected one of {allowed}")
        key = normalise(phrase)
        if key in first_seen:
            raise DataError(
                f"{where}: duplicate phrase (same as line {first_seen[key]}, case and whitespace folded); "
                "a duplicate could land in two splits"
            )
        first_seen[key] = line
        examples.append(Example(phrase=phrase, label=label, line=line))
    if not examples:
        raise DataError(f"{path}: no records")
    return examples


def stratified_split(
    examples: list[Example], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[Example]]:
    """Split per label with a seeded shuffle so every split keeps the class balance."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    rng = random.Random(seed)
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda e: e.line)
        rng.shuffle(group)
        n_test = max(1, round(len(group) * test_fraction))
        n_val = max(1, round(len(group) * val_fraction))
        if len(group) < n_test + n_val + 1:
            raise DataError(f"label {label!r} has {len(group)} examples; too few to split into train/val/test")
        splits["test"] += group[:n_test]
        splits["val"] += group[n_test : n_test + n_val]
        splits["train"] += group[n_test + n_val :]
    for name in SPLITS:
        rng.shuffle(splits[name])
    check_disjoint(splits)
    return splits


def check_disjoint(splits: dict[str, list[Example]]) -> None:
    """Fail if one phrase (case and whitespace folded) appears in two splits."""
    owner: dict[str, tuple[str, int]] = {}
    for name, rows in splits.items():
        for example in rows:
            key = normalise(example.phrase)
            if key in owner and owner[key][0] != name:
                other, line = owner[key]
                raise DataError(f"line {example.line}: phrase is in both '{other}' (line {line}) and '{name}'")
            owner[key] = (name, example.line)


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as UTF-8 JSON lines (callers make it atomic by writing into a temporary folder)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read a prepared split (rows that this project wrote)."""
    return [record for _, record in read_records(Path(path))]
