"""The `slmtune` command: classify phrases, compose params.yaml, check the machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from slmtune.errors import DataError, SlmtuneError


def build_parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="slmtune", description=__doc__)
    commands = parse.add_subparsers(dest="command", required=True)

    classify = commands.add_parser("classify", help="classify phrases with a model folder (int4 ONNX or PyTorch)")
    classify.add_argument("phrase", nargs="?", help="one phrase to classify")
    classify.add_argument("--model-path", type=Path, default=Path("models/int4"))
    classify.add_argument("--input", type=Path, help="jsonl file whose rows have a 'phrase' field")
    classify.add_argument("--output", type=Path, help="where to write the rows with 'prediction' added")
    classify.add_argument("--field", default="phrase", help="the text field of each input row")
    classify.add_argument("--generate", action="store_true", help="greedy generation instead of label scoring")

    params = commands.add_parser("params", help="compose conf/ into params.yaml (Hydra overrides allowed)")
    params.add_argument("overrides", nargs="*", help="e.g. hw=cuda train.learning_rate=1.0e-3")
    params.add_argument("--output", type=Path, default=Path("params.yaml"))

    check = commands.add_parser("check-hw", help="check that this machine can run a hardware profile")
    check.add_argument("overrides", nargs="*", help="e.g. hw=cuda")
    return parse


def read_phrase_rows(path: Path, field: str) -> list[dict]:
    """Rows of a jsonl file, each an object with a non-empty string `field`."""
    from slmtune.data import read_records

    if path.suffix.lower() != ".jsonl":
        raise DataError(f"{path}: --input must be a .jsonl file")
    rows = []
    for line, record in read_records(path):
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line}: expected a JSON object")
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{path}:{line}: missing or empty string field '{field}'")
        rows.append(record)
    return rows


def classify(args: argparse.Namespace) -> None:
    from slmtune.atomic import atomic_write_text
    from slmtune.scoring import generated_labels, load_classifier, predict

    if (args.phrase is None) == (args.input is None):
        raise SlmtuneError("give either one PHRASE or --input FILE.jsonl (with --output OUT.jsonl)")
    if args.input is not None and args.output is None:
        raise SlmtuneError("--input needs --output OUT.jsonl")
    rows = read_phrase_rows(args.input, args.field) if args.input else [{args.field: args.phrase}]
    classifier = load_classifier(args.model_path)
    label = generated_labels if args.generate else predict
    predictions = label(classifier, [row[args.field] for row in rows]) if rows else []
    if args.input is None:
        print(predictions[0])
        return
    lines = [json.dumps({**row, "prediction": p}, ensure_ascii=False) for row, p in zip(rows, predictions, strict=True)]
    atomic_write_text(args.output, "".join(line + "\n" for line in lines))
    print(f"classified {len(rows)} rows -> {args.output}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "classify":
            classify(args)
        elif args.command == "params":
            from slmtune.config import write_params

            write_params(args.output, args.overrides)
            print(f"wrote {args.output} ({' '.join(args.overrides) or 'defaults'})", file=sys.stderr)
        elif args.command == "check-hw":
            from slmtune.config import compose, validate
            from slmtune.hardware import check_machine

            hw = validate(compose(args.overrides)).hw
            check_machine(hw)
            print(f"hw={hw.name}: this machine can run it", file=sys.stderr)
    except SlmtuneError as err:
        print(f"slmtune: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
