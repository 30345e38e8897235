"""The `slmtune` command: classify phrases, generate answers, chat, compose params.yaml, check the machine."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from pathlib import Path

from slmtune.environment import go_offline
from slmtune.errors import DataError, ModelError, SlmtuneError, add_debug_flag, exit_on_failure
from slmtune.quiet import quiet_library_noise

DEFAULT_MAX_NEW_TOKENS = 256
PIN_LINE = re.compile(r"\s*- [A-Za-z0-9][A-Za-z0-9._-]*==\S+")  # a pin in a printed Azure ML job


def build_parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="slmtune", description=__doc__)
    add_debug_flag(parse)
    commands = parse.add_subparsers(dest="command", required=True)

    classify = commands.add_parser("classify", help="classify phrases with a model folder (int4 ONNX or PyTorch)")
    classify.add_argument("phrase", nargs="?", help="one phrase to classify")
    classify.add_argument("--model-path", type=Path, default=Path("models/int4"))
    classify.add_argument("--input", type=Path, help="jsonl file whose rows have a 'phrase' field")
    classify.add_argument("--output", type=Path, help="where to write the rows with 'prediction' added")
    classify.add_argument("--field", default="phrase", help="the text field of each input row")
    classify.add_argument("--generate", action="store_true", help="greedy generation instead of label scoring")
    classify.add_argument(
        "--scores", action="store_true", help="also give each label's probability (JSON; a 'scores' field per row)"
    )
    classify.add_argument("--adapter", type=Path, help="an ONNX Runtime adapter file to make active on a LoRA base")

    generate = commands.add_parser("generate", help="answer prompts with a generative model folder (streams one)")
    generate.add_argument("prompt", nargs="?", help="one prompt; its answer streams to stdout")
    chat = commands.add_parser("chat", help="an interactive chat in the terminal with a generative model folder")
    for command in (generate, chat):
        command.add_argument("--model-path", type=Path, default=Path("models/int4"))
        command.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="answer length cap")
        command.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; up to 2: sampled")
        command.add_argument("--seed", type=int, default=0, help="seed of the sampling (temperature > 0)")
        command.add_argument("--adapter", type=Path, help="an ONNX Runtime adapter file to make active on a LoRA base")
    generate.add_argument("--input", type=Path, help="jsonl file whose rows have a 'prompt' field")
    generate.add_argument("--output", type=Path, help="where to write the rows with 'response' added")
    generate.add_argument("--field", default="prompt", help="the prompt field of each input row")

    serve = commands.add_parser("serve", help="serve a model folder over HTTP: OpenAI-compatible API and a web page")
    serve.add_argument("--model-path", type=Path, default=Path("models/int4"))
    serve.add_argument("--host", help="address to bind (default serve.host: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, help="TCP port (default serve.port: 8000)")
    serve.add_argument(
        "--api-key",
        default=os.environ.get("SLMTUNE_API_KEY"),
        help="require `Authorization: Bearer KEY` (default: $SLMTUNE_API_KEY; none: no key)",
    )
    serve.add_argument("--served-model-name", help="the model id clients see (default: the folder's name)")
    serve.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also serve a runtime adapter on this LoRA base as model NAME (repeatable)",
    )
    serve.add_argument("overrides", nargs="*", help="serve.* settings, e.g. serve.max_batch_size=16")

    lora_base = commands.add_parser(
        "lora-base", help="build a base model to int4 with LoRA inputs, for runtime adapters (--adapter)"
    )
    lora_base.add_argument("--base", type=Path, default=Path("models/base"), help="the PyTorch base folder")
    lora_base.add_argument("--out", type=Path, default=Path("models/int4-lora-base"))
    lora_base.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="build as build_int4 did with this params file: its build.* and hw.execution_provider "
        "(default: the workspace's; conf/'s defaults where there is none)",
    )
    lora_base.add_argument("overrides", nargs="*", help="build.* and hw.* settings on top, e.g. build.block_size=64")
    export = commands.add_parser("export-adapter", help="write a peft LoRA adapter as an ONNX Runtime adapter file")
    export.add_argument("adapter", type=Path, help="the peft adapter folder (e.g. models/adapter)")
    export.add_argument("--base", type=Path, default=Path("models/base"), help="the base it was trained on")
    export.add_argument("--out", type=Path, required=True, help="the .onnx_adapter file to write (a .json card beside)")

    experiments = commands.add_parser(
        "export-experiments", help="an ONNX Runtime adapter file per experiment trained on this workspace's base"
    )
    experiments.add_argument("names", nargs="+", help="experiment names (or other revisions DVC knows)")
    experiments.add_argument("--out", type=Path, default=Path("adapters"), help="where NAME.onnx_adapter go")

    spec = commands.add_parser(
        "azureml-spec", help="print the Azure ML job that hw=azureml would submit for train_lora, without submitting"
    )
    spec.add_argument("overrides", nargs="*", help="hw.azureml.* and other settings (hw=azureml is implied)")
    spec.add_argument("--data", default="data/prepared", help="the prepared data: a local folder or an azureml:// URI")
    spec.add_argument("--base", default="models/base", help="the base model: a local folder or an azureml:// URI")
    spec.add_argument(
        "--without-pins", action="store_true", help="for reading: each pip list of pins as one comment line"
    )

    params = commands.add_parser("params", help="compose conf/ into params.yaml (Hydra overrides allowed)")
    params.add_argument("overrides", nargs="*", help="e.g. hw=cuda train.learning_rate=1.0e-3")
    params.add_argument("--output", type=Path, default=Path("params.yaml"))

    check = commands.add_parser("check-hw", help="check that this machine can run a hardware profile")
    check.add_argument("overrides", nargs="*", help="e.g. hw=cuda")
    for command in (classify, generate, chat, serve, lora_base, export, experiments, spec, params, check):
        add_debug_flag(command)
    return parse


def read_phrase_rows(path: Path, *fields: str) -> list[dict]:
    """Rows of a jsonl file, each an object with a non-empty string in every one of `fields`; at least one row."""
    from slmtune.data import json_type, read_records

    if path.suffix.lower() != ".jsonl":
        raise DataError(f"{path}: --input must be a .jsonl file (one JSON object per line)")
    rows = []
    for line, record in read_records(path):
        where = f"{path}:{line}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object with a '{fields[0]}' field, got {json_type(record)}")
        for field in fields:
            value = record.get(field)
            if value is None:
                raise DataError(f"{where}: no '{field}' field; every row needs one (or name another with --field)")
            if not isinstance(value, str):
                raise DataError(f"{where}: field '{field}' must be a string, got {json_type(value)}")
            if not value.strip():
                raise DataError(f"{where}: field '{field}' is empty; give each row some text or remove it")
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{where}: holds a lone surrogate escape (like \\ud800); fix the text") from None
        rows.append(record)
    if not rows:
        raise DataError(f"{path}: no rows to classify (the file is empty)")
    return rows


def check_model_path(folder: Path) -> None:
    """`--model-path` must name an existing folder."""
    if not folder.is_dir():
        raise ModelError(
            f"--model-path {folder}: model folder not found; build it with `dvc repro` (or fetch it with "
            "`dvc pull`), or point --model-path at a model folder such as models/int4 or models/merged"
        )


def classify(args: argparse.Namespace) -> None:
    from slmtune.atomic import atomic_write_text

    if (args.phrase is None) == (args.input is None):
        raise SlmtuneError("give either one PHRASE or --input FILE.jsonl (with --output OUT.jsonl)")
    if args.input is not None and args.output is None:
        raise SlmtuneError("--input needs --output OUT.jsonl")
    if args.scores and args.generate:
        raise SlmtuneError("--scores comes from label scoring; leave out --generate to get them")
    if args.phrase is not None and not args.phrase.strip():
        raise DataError('the phrase is empty; give some text to classify, e.g. `slmtune classify "what a day!"`')
    rows = read_phrase_rows(args.input, args.field) if args.input else [{args.field: args.phrase}]
    check_model_path(args.model_path)
    results = classified_rows(args.model_path, rows, args.field, args.generate, args.scores, args.input, args.adapter)
    if args.input is None:
        print(json.dumps(results[0], ensure_ascii=False) if args.scores else results[0]["prediction"])
        return
    lines = [json.dumps({**row, **result}, ensure_ascii=False) for row, result in zip(rows, results, strict=True)]
    atomic_write_text(args.output, "".join(line + "\n" for line in lines))
    print(f"classified {len(rows)} rows -> {args.output}", file=sys.stderr)


def classified_rows(
    model_path: Path,
    rows: list[dict],
    field: str,
    generate: bool,
    scores: bool,
    source: Path | None = None,
    adapter: Path | None = None,
) -> list[dict]:
    """`{"prediction": label}` per row, with `"scores"` (each label's probability) when asked."""
    from slmtune.config import compose
    from slmtune.scoring import generated_labels, label_probabilities, load_classifier, predict

    settings = compose().eval  # the project's batch size and generation length, as eval uses them
    classifier = load_classifier(
        model_path, batch_size=settings.batch_size, max_new_tokens=settings.max_new_tokens, runtime_adapter=adapter
    )
    phrases = [row[field] for row in rows]
    check_phrases_fit(classifier, phrases, model_path, source)
    if not scores:
        label = generated_labels if generate else predict
        return [{"prediction": prediction} for prediction in label(classifier, phrases)]
    results = []
    for probabilities in label_probabilities(classifier, phrases):
        prediction = max(probabilities, key=probabilities.get)
        results.append({"prediction": prediction, "scores": {k: round(v, 6) for k, v in probabilities.items()}})
    return results


def check_phrases_fit(classifier, phrases: list[str], model_path: Path, source: Path | None) -> None:
    """Refuse, before any model call, phrases too long for the model's context (`source`: the --input file)."""
    from slmtune.scoring import overlong_prompts

    overlong = overlong_prompts(classifier, classifier.prompt_lengths(classifier.prompts(phrases)))
    if not overlong:
        return
    index, tokens = overlong[0]
    more = f" (and {len(overlong) - 1} more)" if len(overlong) > 1 else ""
    where = "the phrase" if source is None else f"{source}: row {index + 1}{more}"
    raise DataError(
        f"{where} is {tokens} tokens with the prompt and the longest label; the context of {model_path} holds "
        f"{classifier.context_length} tokens: shorten it"
    )


def sampling_options(args: argparse.Namespace):
    """--max-new-tokens, --temperature and --seed, checked before anything loads."""
    from slmtune.generation import Sampling

    sampling = Sampling(args.max_new_tokens, args.temperature, args.seed)
    sampling.check()
    return sampling


def open_generator(args: argparse.Namespace):
    """The generator for --model-path."""
    from slmtune.config import compose
    from slmtune.generation import load_generator

    return load_generator(args.model_path, batch_size=compose().eval.batch_size, runtime_adapter=args.adapter)


def generation_task(model_path: Path, adapter: Path | None = None):
    """The task card of a generative model folder, or of its --adapter (cheap: read before the model loads)."""
    from slmtune.scoring import check_model_kind

    check_model_path(model_path)
    if adapter is not None:
        from slmtune.runtime_adapters import adapter_task

        return adapter_task(model_path, adapter, "generation")
    return check_model_kind(model_path, "generation")


def prompt_rows(args: argparse.Namespace, template: str | None) -> list[dict]:
    """The rows to answer: one prompt, or --input's rows (a template model reads its template's columns)."""
    from slmtune.generation_data import template_columns

    if args.input is None:
        if template is None:
            return [{args.field: args.prompt}]
        columns = template_columns(template)
        if len(columns) != 1:
            raise DataError(
                f"the model's prompt template {template!r} reads the columns {columns}; give them as rows of "
                "--input FILE.jsonl"
            )
        return [{columns[0]: args.prompt}]
    if template is None:
        return read_phrase_rows(args.input, args.field)
    return read_phrase_rows(args.input, *template_columns(template))


def generate(args: argparse.Namespace) -> None:
    from slmtune.atomic import atomic_write_text
    from slmtune.generation import chat_prompt

    if (args.prompt is None) == (args.input is None):
        raise SlmtuneError("give either one PROMPT or --input FILE.jsonl (with --output OUT.jsonl)")
    if args.input is not None and args.output is None:
        raise SlmtuneError("--input needs --output OUT.jsonl")
    if args.prompt is not None and not args.prompt.strip():
        raise DataError('the prompt is empty; give some text, e.g. `slmtune generate "turn on the porch light"`')
    sampling = sampling_options(args)
    template = generation_task(args.model_path, args.adapter).prompt_template
    rows = prompt_rows(args, template)
    generator = open_generator(args)
    if template is None:
        prompts = [chat_prompt(generator, [("user", row[args.field])]) for row in rows]
    else:
        prompts = [template.format(**row) for row in rows]
    if args.input is None:
        for piece in generator.stream(prompts[0], sampling):
            print(piece, end="", flush=True)
        print()
        return
    answers = generator.generate(prompts, sampling)
    lines = [json.dumps({**row, "response": a}, ensure_ascii=False) for row, a in zip(rows, answers, strict=True)]
    atomic_write_text(args.output, "".join(line + "\n" for line in lines))
    print(f"answered {len(rows)} rows -> {args.output}", file=sys.stderr)


def chat(args: argparse.Namespace) -> None:
    """Read a message, stream the answer, keep the conversation; /reset forgets it, /exit (or EOF) ends."""
    from slmtune.generation import chat_prompt

    sampling = sampling_options(args)
    if generation_task(args.model_path, args.adapter).prompt_template is not None:
        raise ModelError(
            f"{args.model_path}: trained on a text template, not a chat (data.format=text_template); "
            "use `slmtune generate` with it"
        )
    generator = open_generator(args)
    interactive = sys.stdin.isatty()
    print(f"chatting with {args.model_path}; /reset forgets the conversation, /exit ends it", file=sys.stderr)
    history: list[tuple[str, str]] = []
    while True:
        try:
            message = input("you> " if interactive else "").strip()
        except EOFError:
            break
        if message in ("/exit", "/quit"):
            break
        if message == "/reset":
            history = []
            print("(conversation forgotten)", file=sys.stderr)
            continue
        if not message:
            continue
        history.append(("user", message))
        try:
            answer = stream_answer(generator, chat_prompt(generator, history), sampling)
        except ModelError as err:  # the conversation outgrew the model's context: say so, keep chatting
            history.pop()
            print(f"\n(not answered: {err})", file=sys.stderr, flush=True)
            continue
        history.append(("assistant", answer))


def stream_answer(generator, prompt: str, sampling) -> str:
    """Print the answer as it streams, after 'assistant> '; the whole answer."""
    pieces = []
    for piece in generator.stream(prompt, sampling):
        if not pieces:
            print("assistant> ", end="", flush=True)
        pieces.append(piece)
        print(piece, end="", flush=True)
    print("" if pieces else "assistant> ", flush=True)
    return "".join(pieces).strip()


def serve_model(args: argparse.Namespace) -> None:
    """Serve --model-path until SIGTERM or Ctrl-C (finishing the requests in flight)."""
    import dataclasses

    from slmtune.config import compose
    from slmtune.serving.server import serve

    outside = [o for o in args.overrides if not o.lstrip("+~").startswith("serve.")]
    if outside:
        raise SlmtuneError(f"serve takes serve.* overrides only, not {outside[0]!r}")
    params = compose(args.overrides)
    given = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    settings = dataclasses.replace(params.serve, **given)
    if not 0 <= settings.port <= 65535:
        raise SlmtuneError(f"--port {settings.port}: must be from 0 to 65535")
    check_model_path(args.model_path)
    adapters = {}
    for given in args.adapter:
        name, sep, path = given.partition("=")
        if not sep or not name or not path:
            raise SlmtuneError(f"--adapter {given!r}: give NAME=FILE, e.g. --adapter tone=adapters/tone.onnx_adapter")
        adapters[name] = Path(path)
    serve(args.model_path, settings, args.api_key, args.served_model_name, params.eval.batch_size, adapters)


def build_lora_base(args: argparse.Namespace) -> None:
    """models/base -> int4 (as build_int4 built it with --params, overrides on top) -> the same with LoRA inputs."""
    import tempfile

    from slmtune.config import compose
    from slmtune.runtime_adapters import add_lora_inputs
    from slmtune.stages.build_int4 import build

    check_model_path(args.base)
    params = compose([*build_settings_of(args.params), *args.overrides])
    with tempfile.TemporaryDirectory(prefix="slmtune-lora-base-") as tmp:
        build(params, args.base, Path(tmp) / "int4")
        inputs = add_lora_inputs(Path(tmp) / "int4", args.base, args.out)
    print(f"LoRA base with {len(inputs)} adapted MatMuls -> {args.out}", file=sys.stderr)


def build_settings_of(params_file: Path) -> list[str]:
    """A params file's build.* and hw.execution_provider as overrides (none if the file does not exist)."""
    import json
    from dataclasses import asdict

    from slmtune.config import load_params

    if not params_file.is_file():
        return []
    params = load_params(params_file)
    settings = {f"build.{key}": value for key, value in asdict(params.build).items()}
    settings["hw.execution_provider"] = params.hw.execution_provider
    return [f"{key}={json.dumps(value)}" for key, value in settings.items()]


def export_runtime_adapter(args: argparse.Namespace) -> None:
    from slmtune.runtime_adapters import export_adapter

    check_model_path(args.adapter)
    check_model_path(args.base)
    if args.out.suffix != ".onnx_adapter":
        raise SlmtuneError(f"--out {args.out}: name the file *.onnx_adapter (its card is written beside it as .json)")
    card = export_adapter(args.adapter, args.base, args.out)
    print(f"adapter r={card.rank} on {', '.join(card.target_modules)} -> {args.out}", file=sys.stderr)


def export_experiment_adapters(args: argparse.Namespace) -> None:
    from slmtune.experiment_adapters import export_experiments

    for path in export_experiments(args.names, args.out):
        print(f"adapter -> {path}", file=sys.stderr)


def print_azureml_spec(args: argparse.Namespace) -> None:
    import tempfile

    from slmtune.azureml import check_ready, job_spec
    from slmtune.config import write_params
    from slmtune.deferred_base import DEFERRED, is_deferred

    with tempfile.TemporaryDirectory(prefix="slmtune-spec-") as tmp:
        params_path = Path(tmp) / "params.yaml"
        params = write_params(params_path, ["hw=azureml", *args.overrides])
        check_ready(params.hw)  # settings first: nothing is prepared for a job that cannot be sent
        data = Path(args.data)
        if is_deferred(params) and not str(args.data).startswith("azureml:") and not (data / DEFERRED).is_file():
            # what `make train HW=azureml` uploads: the data a deferred prepare checks (nothing is downloaded)
            from slmtune.stages.prepare import defer

            data = Path(tmp) / "data"
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the spec
                defer(params, data, Path(tmp) / "base")
        spec = job_spec(params, params_path, data, args.base).replace(str(data.resolve()), str(args.data))
        print(without_pins(spec) if args.without_pins else spec, end="")


def without_pins(spec: str) -> str:
    """The spec for reading: each environment's pip list of requirements.lock pins as one comment."""
    lines = spec.splitlines()
    pins = [line for line in lines if PIN_LINE.fullmatch(line)]
    per_list = len(pins) // max(1, sum(line.strip() == "- pip:" for line in lines))
    kept = []
    for line in lines:
        if PIN_LINE.fullmatch(line):
            continue
        kept.append(line)
        if line.strip() == "- pip:":
            kept.append(f"{line[: line.index('-')]}  # the {per_list} pins of requirements.lock (--without-pins)")
    return "\n".join(kept) + "\n"


def compose_params(args: argparse.Namespace) -> None:
    from slmtune.config import write_params

    write_params(args.output, args.overrides)
    print(f"wrote {args.output} ({' '.join(args.overrides) or 'defaults'})", file=sys.stderr)


def check_hw(args: argparse.Namespace) -> None:
    from slmtune.config import compose
    from slmtune.hardware import check_machine

    hw = compose(args.overrides).hw
    check_machine(hw)
    print(f"hw={hw.name}: this machine can run it", file=sys.stderr)


COMMANDS = {
    "classify": classify,
    "generate": generate,
    "chat": chat,
    "serve": serve_model,
    "lora-base": build_lora_base,
    "export-adapter": export_runtime_adapter,
    "export-experiments": export_experiment_adapters,
    "azureml-spec": print_azureml_spec,
    "params": compose_params,
    "check-hw": check_hw,
}


def main(argv: list[str] | None = None) -> None:
    go_offline()
    quiet_library_noise()
    args = build_parser().parse_args(argv)
    exit_on_failure(lambda: COMMANDS[args.command](args), "slmtune: error: ", "slmtune: ")


if __name__ == "__main__":
    main()
