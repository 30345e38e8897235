"""Stage prepare: validate and split the data, render prompts, materialise the base model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from slmtune.atomic import atomic_outputs, atomic_write_json
from slmtune.config import Params
from slmtune.data import SPLITS, Example, load_examples, stratified_split, write_jsonl
from slmtune.environment import go_offline, quiet
from slmtune.errors import DataError
from slmtune.source_uris import source_kind
from slmtune.sources import resolve_source
from slmtune.stages.common import parser, run, stage_params

SOURCE_CACHE = Path(".slmtune-cache/sources")  # remote data is fetched here first (errors name these files)


def main(argv: list[str] | None = None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--out-data", type=Path, default=Path("data/prepared"))
    parse.add_argument("--out-model", type=Path, default=Path("models/base"))
    args = parse.parse_args(argv)
    run("prepare", lambda: prepare(stage_params(args.params, offline=False), args.out_data, args.out_model))


def prepare(params: Params, out_data: Path, out_model: Path, cache: Path = SOURCE_CACHE) -> None:
    """Validate and split the data, render prompts, and materialise the base model and its task card."""
    data = params.data
    if params.model.source != "hub" and source_kind(data.source) != "hub":
        go_offline()  # only a hub model or data set is downloaded
    else:
        quiet()
    from slmtune.models import load_tokenizer, materialise_base
    from slmtune.prompts import build_task, user_message

    source = resolve_source(data, cache)
    examples = load_examples(source.file, data.labels, data.text_field, data.label_field)
    splits = stratified_split(examples, data.val_fraction, data.test_fraction, params.seed, data.labels, source.file)
    print(
        f"[slmtune] {len(examples)} examples from {data.source}: "
        + ", ".join(f"{name} {len(splits[name])}" for name in SPLITS),
        flush=True,
    )
    with atomic_outputs(out_data, out_model) as (data_tmp, model_tmp):
        if source.record["kind"] != "local":  # keep what was fetched: DVC versions it with the split
            shutil.copytree(source.file.parent, data_tmp / "source")
        atomic_write_json(data_tmp / "source.json", source.record)
        instruction = params.data.instruction
        corpus = [user_message(instruction, e.phrase) for e in splits["train"]] + [e.label for e in splits["train"]]
        materialise_base(params.model, corpus, params.seed, model_tmp)
        tokenizer = load_tokenizer(model_tmp, params.model.trust_remote_code)
        task = build_task(tokenizer, instruction, list(data.labels))
        task.save(model_tmp)
        rows = {name: split_rows(splits[name], tokenizer, task.completions, params, source.file) for name in SPLITS}
        for name in SPLITS:
            write_jsonl(data_tmp / f"{name}.jsonl", rows[name])


def split_rows(
    examples: list[Example], tokenizer: Any, completions: dict[str, str], params: Params, source_file: Path
) -> list[dict]:
    """One prepared row per example; a phrase too long for `model.max_length` is refused, never truncated."""
    from slmtune.prompts import prompt_lengths, render_prompt

    instruction, limit = params.data.instruction, params.model.max_length
    prompts = [render_prompt(tokenizer, instruction, e.phrase) for e in examples]
    for example, length in zip(examples, prompt_lengths(tokenizer, prompts, list(completions.values())), strict=True):
        if length > limit:
            raise DataError(
                f"{source_file}:{example.line}: phrase too long: {length} tokens with the prompt and the "
                f"longest answer, over model.max_length={limit}; shorten the phrase (truncating would cut what the "
                "label is about) or raise model.max_length"
            )
    return [
        {"phrase": e.phrase, "label": e.label, "prompt": prompt, "completion": completions[e.label]}
        for e, prompt in zip(examples, prompts, strict=True)
    ]


if __name__ == "__main__":
    main()
