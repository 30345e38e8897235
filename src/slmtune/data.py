"""The labelled data: load (json, jsonl, csv), validate, split, read and write jsonl.

What the loader accepts and refuses (every refusal is a DataError naming file:line):
- UTF-8 text, with or without a byte-order mark; other encodings are refused with the
  line of the first bad byte.
- Lines are separated by "\\n" (or "\\r\\n"), as editors count them.
- A label matches a configured label whatever its case and surrounding spaces ("Joy " is
  "joy") and is stored as configured.
- Phrases are stripped; an empty phrase, a duplicate (case, whitespace and Unicode width
  folded), a missing field or a non-string value is refused.
- CSV needs a header row that names the text and label columns.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmtune.errors import DataError

SPLITS = ("train", "val", "test")
FIELD_HINT = "the field names are data.text_field and data.label_field"


@dataclass(frozen=True)
class Example:
    """One labelled phrase and where it came from."""

    phrase: str
    label: str
    line: int

    @property
    def key(self) -> str:
        """The phrase folded: two examples with the same key are duplicates."""
        return normalise(self.phrase)


def normalise(phrase: str) -> str:
    """Fold case, whitespace and Unicode width: the key under which two phrases count as duplicates."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", phrase)).strip().casefold()


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    names = {bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: invalid JSON: {err.msg} (column {err.colno}); fix or remove the line") from None
    except (ValueError, RecursionError) as err:  # huge integers, absurd nesting
        raise DataError(f"{where}: unreadable JSON value ({type(err).__name__}: {str(err)[:120]})") from None


def _jsonl_records(path: Path, text: str, fields: tuple[str, ...]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, _parse_json(line, f"{path}:{number}")


def _json_records(path: Path, text: str, fields: tuple[str, ...]) -> Iterator[tuple[int, Any]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path}: unreadable JSON value ({type(err).__name__}: {str(err)[:120]})") from None
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        document = document["data"]
    if not isinstance(document, list):
        raise DataError(f'{path}: expected a JSON array of objects (or {{"data": [...]}}), got {json_type(document)}')
    # A JSON array has no line per record; number the records from 1 instead.
    yield from enumerate(document, start=1)


def _csv_records(path: Path, text: str, fields: tuple[str, ...]) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if reader.fieldnames is None:
            return
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
        missing = [name for name in fields if name not in reader.fieldnames]
        if missing:
            raise DataError(
                f"{path}:1: the CSV header {reader.fieldnames} has no column {missing[0]!r}; "
                f"add the column, or name the right one ({FIELD_HINT})"
            )
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: invalid CSV: {err}") from None


READERS = {".jsonl": _jsonl_records, ".json": _json_records, ".csv": _csv_records}


def read_text(path: Path) -> str:
    """A file's text as UTF-8 (a byte-order mark is dropped); a bad byte is reported with its line."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); save the file as UTF-8"
        ) from None


def read_records(path: Path | str, fields: Iterable[str] = ()) -> Iterator[tuple[int, Any]]:
    """Yield (line, record) pairs from a json, jsonl or csv file; a CSV header must name `fields`."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'; use .jsonl, .json or .csv")
    yield from reader(path, read_text(path), tuple(fields))


def string_field(record: dict[str, Any], key: str, where: str, hint: str = FIELD_HINT) -> str:
    """`record[key]`, checked to be present (`hint` says where field names come from), a string, and UTF-8."""
    value = record.get(key)
    if value is None:
        raise DataError(f"{where}: missing field '{key}' ({hint})")
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {json_type(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{where}: field '{key}' holds a lone surrogate escape (like \\ud800); fix the text") from None
    return value


def _label(raw: str, canonical: dict[str, str], where: str) -> str:
    """The configured label that `raw` names, case and surrounding spaces aside."""
    label = canonical.get(raw.strip().casefold())
    if label is None:
        raise DataError(
            f"{where}: unknown label {raw.strip()!r}; expected one of {list(canonical.values())} "
            "(case aside); fix the row or add the label to data.labels"
        )
    return label


def load_examples(
    path: Path | str, labels: Iterable[str], text_field: str = "phrase", label_field: str = "tone"
) -> list[Example]:
    """Load and validate every record: fields present, phrase non-empty, label known, no duplicates."""
    path = Path(path)
    canonical = {label.strip().casefold(): label for label in labels}
    examples: list[Example] = []
    first_seen: dict[str, int] = {}
    for line, record in read_records(path, (text_field, label_field)):
        where = f"{path}:{line}"
        if not isinstance(record, dict):
            raise DataError(
                f"{where}: expected an object with '{text_field}' and '{label_field}', got {json_type(record)}"
            )
        phrase = string_field(record, text_field, where).strip()
        raw_label = string_field(record, label_field, where)
        if not phrase:
            raise DataError(f"{where}: empty phrase in field '{text_field}'; write the phrase or remove the row")
        label = _label(raw_label, canonical, where)
        key = normalise(phrase)
        if key in first_seen:
            raise DataError(
                f"{where}: duplicate phrase (same as line {first_seen[key]}, case and whitespace folded); "
                "a duplicate could land in two splits: remove one of them"
            )
        first_seen[key] = line
        examples.append(Example(phrase=phrase, label=label, line=line))
    if not examples:
        raise DataError(
            f"{path}: no records (the file is empty or holds only blank lines); "
            f"each row needs '{text_field}' and '{label_field}'"
        )
    return examples


def _split_sizes(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(test, val) rows for a class of `count` rows: each at least one."""
    return max(1, round(count * test_fraction)), max(1, round(count * val_fraction))


def check_class_sizes(
    examples: list[Example],
    labels: Iterable[str],
    val_fraction: float,
    test_fraction: float,
    source: Path | str | None = None,
) -> None:
    """Fail, naming the label, when a class has too few rows to give train, val and test one each."""
    counts = Counter(example.label for example in examples)
    for label in labels:
        n_test, n_val = _split_sizes(counts[label], val_fraction, test_fraction)
        if counts[label] < n_test + n_val + 1:
            where = f"{source}: " if source else ""
            raise DataError(
                f"{where}label {label!r} has {counts[label]} rows; splitting it needs at least {n_test + n_val + 1} "
                f"(train, val and test at data.val_fraction={val_fraction}, data.test_fraction={test_fraction}); "
                "add rows with this label or remove it from data.labels"
            )


def stratified_split(
    examples: list[Example],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    labels: Iterable[str] | None = None,
    source: Path | str | None = None,
) -> dict[str, list[Example]]:
    """Split per label with a seeded shuffle so every split keeps the class balance.

    `labels` (default: the labels present) must each have enough rows; `source` names the
    file in messages.
    """
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    check_class_sizes(examples, sorted(by_label) if labels is None else labels, val_fraction, test_fraction, source)
    rng = random.Random(seed)
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda e: e.line)
        rng.shuffle(group)
        n_test, n_val = _split_sizes(len(group), val_fraction, test_fraction)
        splits["test"] += group[:n_test]
        splits["val"] += group[n_test : n_test + n_val]
        splits["train"] += group[n_test + n_val :]
    for name in SPLITS:
        rng.shuffle(splits[name])
    check_disjoint(splits, source)
    return splits


def random_split(
    items: list, val_fraction: float, test_fraction: float, seed: int, source: Path | str | None = None
) -> dict[str, list]:
    """A seeded shuffle cut into test, val and train (a generative task has no classes to balance).

    `items` need a `key` (the folded request) and a `line`; a key in two splits is refused (leakage).
    """
    n_test, n_val = _split_sizes(len(items), val_fraction, test_fraction)
    if len(items) < n_test + n_val + 1:
        where = f"{source}: " if source else ""
        raise DataError(
            f"{where}{len(items)} rows; splitting needs at least {n_test + n_val + 1} (train, val and test at "
            f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}); add rows"
        )
    shuffled = sorted(items, key=lambda item: item.line)
    random.Random(seed).shuffle(shuffled)
    splits = {"test": shuffled[:n_test], "val": shuffled[n_test : n_test + n_val], "train": shuffled[n_test + n_val :]}
    check_disjoint(splits, source)
    return {name: splits[name] for name in SPLITS}


def check_disjoint(splits: dict[str, list], source: Path | str | None = None) -> None:
    """Fail if one text (an Example's phrase or a request, folded: its `key`) appears in two splits: leakage."""
    owner: dict[str, tuple[str, int]] = {}
    where = f"{source}:" if source else "line "
    for name, rows in splits.items():
        for row in rows:
            if row.key in owner and owner[row.key][0] != name:
                other, line = owner[row.key]
                raise DataError(
                    f"{where}{row.line}: leakage: the same text is in both '{other}' (line {line}) and '{name}'; "
                    "remove one of the two rows"
                )
            owner[row.key] = (name, row.line)


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as UTF-8 JSON lines (callers make it atomic by writing into a temporary folder)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read a prepared split (rows that this project wrote)."""
    return [record for _, record in read_records(Path(path))]
