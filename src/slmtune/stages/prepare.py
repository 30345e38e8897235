"""Stage prepare: validate and split the data, render prompts, materialise the base model."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from slmtune.atomic import atomic_outputs, atomic_write_json
from slmtune.config import Params
from slmtune.data import SPLITS, Example, load_examples, random_split, stratified_split, write_jsonl
from slmtune.environment import go_offline, quiet
from slmtune.errors import ConfigError, DataError
from slmtune.prompts import Task, build_task, user_message
from slmtune.source_uris import source_kind
from slmtune.sources import ResolvedSource, resolve_source
from slmtune.stages.common import parser, run, stage_params

SOURCE_CACHE = Path(".slmtune-cache/sources")  # remote data is fetched here first (errors name these files)


def main(argv: list[str] | None = None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--out-data", type=Path, default=Path("data/prepared"))
    parse.add_argument("--out-model", type=Path, default=Path("models/base"))
    parse.add_argument("--deferred-data", type=Path, help="in an Azure ML job: the data a deferred prepare wrote")
    parse.add_argument("--registry-artifact", type=Path, help="in an Azure ML job: the registry model's input folder")
    args = parse.parse_args(argv)
    run("prepare", lambda: prepare_stage(args))


def prepare_stage(args: argparse.Namespace) -> None:
    """Prepare here, leave the model to the Azure ML job (hw=azureml), or finish a deferred prepare in the job."""
    from slmtune.deferred_base import deferred_source, is_deferred

    params = stage_params(args.params, offline=False)
    if args.deferred_data is not None:
        from slmtune.key_vault import export_hf_token

        export_hf_token()  # in the job: HF_TOKEN from the Key Vault secret the submission named, if any
        source = deferred_source(args.deferred_data)
        prepare(params, args.out_data, args.out_model, source=source, registry_artifact=args.registry_artifact)
    elif is_deferred(params):
        defer(params, args.out_data, args.out_model)
    else:
        prepare(params, args.out_data, args.out_model)


def defer(params: Params, out_data: Path, out_model: Path, cache: Path = SOURCE_CACHE) -> None:
    """hw=azureml: check the data and the model's pin, and leave the download to the job."""
    from slmtune.deferred_base import model_reference, write_deferred

    quiet()
    source = resolve_source(params.data, cache)
    task = _task_rows(params, source.file)
    reference = model_reference(params.model)
    print(
        f"[slmtune] {task.count} examples from {params.data.source} checked; the Azure ML job downloads "
        f"{reference.get('uri') or reference['hub_id']} and prepares there (hw=azureml): nothing downloaded here",
        flush=True,
    )
    with atomic_outputs(out_data, out_model) as (data_tmp, model_tmp):
        write_deferred(params.model, source, data_tmp, model_tmp)


def _task_rows(params: Params, source_file: Path) -> ClassificationRows | GenerationRows:
    kind = ClassificationRows if params.data.kind == "classification" else GenerationRows
    return kind(params, source_file)


def prepare(
    params: Params,
    out_data: Path,
    out_model: Path,
    cache: Path = SOURCE_CACHE,
    source: ResolvedSource | None = None,
    registry_artifact: Path | None = None,
) -> None:
    """Validate and split the data, render prompts, and materialise the base model and its task card.

    `source` and `registry_artifact` come from a deferred prepare, in the Azure ML job.
    """
    data = params.data
    if params.model.source not in ("hub", "azureml") and source_kind(data.source) != "hub":
        go_offline()  # only a hub or registry model, or a hub data set, is downloaded
    else:
        quiet()
    from slmtune.models import load_tokenizer, materialise_base

    if params.model.source == "tiny" and params.model.tiny.pretrain_epochs and data.kind != "classification":
        raise ConfigError(
            f"model.tiny.pretrain_epochs={params.model.tiny.pretrain_epochs}: pretraining the tiny base covers "
            f"classification tasks; set it to 0 for data={data.name} (a {data.kind} task)"
        )
    source = source or resolve_source(data, cache)
    task = _task_rows(params, source.file)
    print(
        f"[slmtune] {task.count} examples from {data.source}: "
        + ", ".join(f"{name} {len(task.splits[name])}" for name in SPLITS),
        flush=True,
    )
    with atomic_outputs(out_data, out_model) as (data_tmp, model_tmp):
        if source.record["kind"] != "local":  # keep what was fetched: DVC versions it with the split
            shutil.copytree(source.file.parent, data_tmp / "source")
        atomic_write_json(data_tmp / "source.json", source.record)
        materialise_base(params.model, task.corpus(), params.seed, model_tmp, registry_artifact)
        tokenizer = load_tokenizer(model_tmp, params.model.trust_remote_code)
        card = task.card(tokenizer)
        card.save(model_tmp)
        rows = {name: task.rows(name, tokenizer, card) for name in SPLITS}
        tiny = params.model.tiny
        if params.model.source == "tiny" and tiny.pretrain_epochs:
            from slmtune.tiny_model import pretrain_tiny_base

            loss = pretrain_tiny_base(
                model_tmp, rows["train"], tiny.pretrain_epochs, tiny.pretrain_learning_rate, params.seed
            )
            print(f"[slmtune] pretrained the base {tiny.pretrain_epochs} epochs on the training split: loss {loss:.4f}")
        for name in SPLITS:
            write_jsonl(data_tmp / f"{name}.jsonl", rows[name])


class ClassificationRows:
    """A label task's examples, split with every label in every split."""

    def __init__(self, params: Params, source_file: Path):
        data = params.data
        self.params, self.source_file = params, source_file
        examples = load_examples(source_file, data.labels, data.text_field, data.label_field)
        self.count = len(examples)
        self.splits = stratified_split(
            examples, data.val_fraction, data.test_fraction, params.seed, data.labels, source_file
        )

    def corpus(self) -> list[str]:
        """The texts a tiny tokenizer is trained on: the training split's prompts and labels."""
        instruction, train = self.params.data.instruction, self.splits["train"]
        return [user_message(str(instruction), e.phrase) for e in train] + [e.label for e in train]

    def card(self, tokenizer: Any) -> Task:
        return build_task(tokenizer, str(self.params.data.instruction), list(self.params.data.labels))

    def rows(self, name: str, tokenizer: Any, card: Task) -> list[dict]:
        return split_rows(self.splits[name], tokenizer, card.completions, self.params, self.source_file)


class GenerationRows:
    """A text task's rows (fields, messages or text_template), split at random with no request in two splits."""

    def __init__(self, params: Params, source_file: Path):
        from slmtune.generation_data import load_text_rows

        data = params.data
        self.params, self.source_file = params, source_file
        rows = load_text_rows(source_file, data)
        self.count = len(rows)
        self.splits = random_split(rows, data.val_fraction, data.test_fraction, params.seed, source_file)

    def corpus(self) -> list[str]:
        """The texts a tiny tokenizer is trained on: the training split's turns, or prompts and completions."""
        texts = []
        for row in self.splits["train"]:
            texts += [content for _, content in row.messages] or [row.prompt, row.completion]
        return texts

    def card(self, tokenizer: Any) -> Task:
        data = self.params.data
        template = data.prompt_template if data.format == "text_template" else None
        instruction = data.instruction if data.format == "fields" else None
        return Task(instruction=instruction, kind="generation", system=data.system, prompt_template=template)

    def rows(self, name: str, tokenizer: Any, card: Task) -> list[dict]:
        """Prepared rows; a row longer than `model.max_length` tokens is refused, never truncated."""
        from slmtune.generation_data import prepared_row
        from slmtune.tokenization import tokenize_segments

        rows = [prepared_row(tokenizer, row, f"{self.source_file}:{row.line}") for row in self.splits[name]]
        limit = self.params.model.max_length
        lengths = [len(ids) for ids in tokenize_segments(tokenizer, [row["segments"] for row in rows])["input_ids"]]
        for row, length in zip(rows, lengths, strict=True):
            if length > limit:
                raise DataError(
                    f"{self.source_file}:{row['line']}: {length} tokens with the chat template, over "
                    f"model.max_length={limit}; shorten the row (truncating would cut the answer the loss is on) "
                    "or raise model.max_length"
                )
        return rows


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
