"""Bad input: every user error is one clear message, a non-zero exit, and nothing changed on disk.

Each case sets up a small workspace (params.yaml, a data set, the last good outputs of the
stages and, where needed, real tiny model folders), damages one thing, runs the stage
script or the `slmtune` command the way a user does, and checks that:
- the exit status is 1 and stderr holds no traceback;
- the message names the place (file:line, config key or folder) and says what is wrong;
- a stage's message says that `dvc checkout` restores the last good outputs;
- not one file in the workspace was added, removed or changed (no partial output).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, run_module, tool_env
from slmtune.data import Example, check_disjoint, load_examples
from slmtune.errors import DataError
from slmtune.stages.common import RESTORE_HINT

LABELS = ["sad", "joy", "fear", "surprise"]
GOOD_ROWS = [
    ("I miss you so much", "sad"),
    ("The rain matches my mood today", "sad"),
    ("Nobody came to my party", "sad"),
    ("I lost my grandmother's ring", "sad"),
    ("Everything feels grey and heavy", "sad"),
    ("Best day ever!", "joy"),
    ("We won the cup!", "joy"),
    ("The puppy licked my face and I laughed", "joy"),
    ("Sunshine and ice cream, perfect", "joy"),
    ("My sister is getting married!", "joy"),
    ("Something is scratching at the window", "fear"),
    ("I heard footsteps behind me in the dark", "fear"),
    ("The brakes stopped working on the hill", "fear"),
    ("What if the test results are bad", "fear"),
    ("The lights went out and the door creaked", "fear"),
    ("No way, a free cake?", "surprise"),
    ("I did not expect to see you here!", "surprise"),
    ("Wait, it snowed in July?", "surprise"),
    ("They threw me a party out of nowhere", "surprise"),
    ("My old teacher lives next door?!", "surprise"),
]
BAD_LINE = len(GOOD_ROWS) + 1  # a bad row appended to the good ones sits on this line
DATA = "data/raw/tone.jsonl"
STAGE_OUTPUTS = ["data/prepared", "models/base", "models/adapter", "models/merged", "models/int4"]


def good_jsonl(rows: list[tuple[str, str]] = GOOD_ROWS) -> str:
    return "".join(json.dumps({"phrase": phrase, "tone": tone}) + "\n" for phrase, tone in rows)


def with_line(line: str) -> str:
    """The good data set with one more (bad) line, line BAD_LINE."""
    return good_jsonl() + line + "\n"


# ---------------------------------------------------------------------------- workspace


class Workspace:
    """A folder where a stage or `slmtune` runs, with helpers to set up one bad input."""

    def __init__(self, root: Path, models: dict[str, Path] | None):
        self.root, self.models = root, models
        self.params = copy.deepcopy(DEFAULT_PARAMS)
        self.write(DATA, good_jsonl())
        for output in STAGE_OUTPUTS:  # the last good outputs, which a failing stage must leave alone
            self.write(f"{output}/last_good.txt", f"last good {output}\n")
        if models:
            for name in ("base", "adapter", "merged"):
                shutil.rmtree(root / "models" / name)
                shutil.copytree(models["adapter" if name == "adapter" else "base"], root / "models" / name)
        self.save_params()

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write(self, relative: str, content: str | bytes) -> None:
        path = self.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)

    def set(self, **changes: object) -> None:
        """Change params: set(train__r=0) sets train.r."""
        for dotted, value in changes.items():
            *parents, last = dotted.split("__")
            node = self.params
            for part in parents:
                node = node[part]
            node[last] = value
        self.save_params()

    def save_params(self) -> None:
        self.write("params.yaml", yaml.safe_dump(self.params, sort_keys=False))

    def data(self, content: str | bytes, name: str = "tone.jsonl") -> None:
        """Use `content` as the data set (data/raw/NAME)."""
        self.write(f"data/raw/{name}", content)
        self.set(data__source=f"data/raw/{name}")

    def snapshot(self) -> dict[str, str]:
        """Every file and folder under the workspace, with a digest of each file."""
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(self.root.rglob("*"))
        }


DEFAULT_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def stage(name: str, *args: str) -> list[str]:
    return ["-m", f"slmtune.stages.{name}", *args]


def cli(*args: str) -> list[str]:
    return ["-m", "slmtune.cli", *args]


PREPARE = stage("prepare")
MERGE = stage("merge")
BUILD = stage("build_int4")


@dataclass(frozen=True)
class Case:
    """One bad input: how to set it up (returns the command), and what the message must say."""

    setup: Callable[[Workspace], list[str]]
    expect: tuple[str, ...]
    needs_models: bool = False


CASES: dict[str, Case] = {}


def case(name: str, *expect: str, needs_models: bool = False):
    """Register the decorated setup function as the bad-input case `name`."""

    def register(setup: Callable[[Workspace], list[str]]) -> Callable[[Workspace], list[str]]:
        CASES[name] = Case(setup, expect, needs_models)
        return setup

    return register


def data_case(name: str, content: str | bytes, *expect: str, file: str = "tone.jsonl") -> None:
    """A data set that `prepare` must refuse."""

    def setup(ws: Workspace) -> list[str]:
        ws.data(content, file)
        return PREPARE

    CASES[name] = Case(setup, expect)


def params_case(name: str, changes: dict[str, object], *expect: str) -> None:
    """A params.yaml (as `dvc exp run -S` writes it) that every stage must refuse; `prepare` reads it first."""

    def setup(ws: Workspace) -> list[str]:
        ws.set(**changes)
        return PREPARE

    CASES[name] = Case(setup, ("params.yaml", *expect))


def override_case(name: str, overrides: list[str], *expect: str) -> None:
    """Overrides that `slmtune params` must refuse, leaving params.yaml as it was."""
    CASES[name] = Case(lambda ws: cli("params", *overrides, "--output", "params.yaml"), expect)


# ---------------------------------------------------------------------------- data

data_case("data: empty file", b"", f"{DATA}: no records")
data_case("data: only blank lines", "\n   \n\n", f"{DATA}: no records")
data_case("data: missing phrase", with_line('{"tone": "joy"}'), f"{DATA}:{BAD_LINE}: missing field 'phrase'")
data_case("data: missing tone", with_line('{"phrase": "hello there"}'), f"{DATA}:{BAD_LINE}: missing field 'tone'")
data_case(
    "data: phrase is a number",
    with_line('{"phrase": 42, "tone": "joy"}'),
    f"{DATA}:{BAD_LINE}: field 'phrase' must be a string, got a number",
)
data_case(
    "data: tone is a list",
    with_line('{"phrase": "so so", "tone": ["joy"]}'),
    f"{DATA}:{BAD_LINE}: field 'tone' must be a string, got a list",
)
data_case("data: row is not an object", with_line('["hello", "joy"]'), f"{DATA}:{BAD_LINE}: expected an object")
data_case("data: empty phrase", with_line('{"phrase": "", "tone": "joy"}'), f"{DATA}:{BAD_LINE}: empty phrase")
data_case(
    "data: whitespace-only phrase", with_line('{"phrase": " \\t  ", "tone": "joy"}'), f"{DATA}:{BAD_LINE}: empty phrase"
)
data_case(
    "data: unknown label",
    with_line('{"phrase": "how dare you", "tone": "anger"}'),
    f"{DATA}:{BAD_LINE}: unknown label 'anger'",
    "data.labels",
)
data_case(
    "data: invalid JSON on one line", with_line('{"phrase": "oops", "tone": '), f"{DATA}:{BAD_LINE}: invalid JSON"
)
data_case(
    "data: invalid UTF-8 bytes",
    good_jsonl().encode() + b'{"phrase": "caf\xe9 au lait", "tone": "joy"}\n',
    f"{DATA}:{BAD_LINE}: not UTF-8",
    "save the file as UTF-8",
)
data_case(
    "data: lone surrogate escape",
    with_line('{"phrase": "broken \\ud800 text", "tone": "joy"}'),
    f"{DATA}:{BAD_LINE}: field 'phrase' holds a lone surrogate",
)
data_case(
    "data: duplicate phrase",
    with_line('{"phrase": "  i MISS you   so much ", "tone": "sad"}'),
    f"{DATA}:{BAD_LINE}: duplicate phrase (same as line 1",
)
data_case(
    "data: CSV with a missing column",
    "phrase,label\n" + "".join(f"{p},{t}\n" for p, t in GOOD_ROWS),
    "data/raw/tone.csv:1:",
    "no column 'tone'",
    file="tone.csv",
)
data_case(
    "data: CSV row missing its label",
    "phrase,tone\n" + "".join(f'"{p}",{t}\n' for p, t in GOOD_ROWS) + "a lonely phrase\n",
    f"data/raw/tone.csv:{BAD_LINE + 1}: missing field 'tone'",
    file="tone.csv",
)
data_case(
    "data: JSON document is not an array",
    '{"phrase": "one object", "tone": "joy"}',
    "data/raw/tone.json: expected a JSON array",
    file="tone.json",
)
data_case(
    "data: unsupported file type", "sad\tI miss you\n", "data/raw/tone.txt: unsupported file type", file="tone.txt"
)
data_case(
    "data: class with too few rows to split",
    good_jsonl([row for row in GOOD_ROWS if row[1] != "fear"] + [r for r in GOOD_ROWS if r[1] == "fear"][:2]),
    f"{DATA}: label 'fear' has 2 rows",
    "needs at least 3",
)
data_case(
    "data: a configured label has no rows",
    good_jsonl([row for row in GOOD_ROWS if row[1] != "surprise"]),
    f"{DATA}: label 'surprise' has 0 rows",
    "remove it from data.labels",
)
data_case(
    "data: phrase longer than the model's context",
    with_line(json.dumps({"phrase": " ".join(f"word{i}" for i in range(300)), "tone": "joy"})),
    f"{DATA}:{BAD_LINE}: phrase too long",
    "model.max_length=128",
)


@case("data: file not found", "data/raw/absent.jsonl: file not found", "set data.source")
def _data_file_not_found(ws: Workspace) -> list[str]:
    ws.set(data__source="data/raw/absent.jsonl")
    return PREPARE


# ---------------------------------------------------------------------------- config

params_case("config: unknown key", {"train__lerning_rate": 0.1}, "'train.lerning_rate'", "train.learning_rate")
params_case("config: wrong type", {"train__r": "sixteen"}, "'train.r'", "could not be converted")
params_case("config: negative learning rate", {"train__learning_rate": -0.001}, "'train.learning_rate' is -0.001")
params_case("config: LoRA rank r=0", {"train__r": 0}, "'train.r' is 0")
params_case("config: lora_alpha=0", {"train__lora_alpha": 0}, "'train.lora_alpha' is 0")
params_case("config: lora_dropout=1", {"train__lora_dropout": 1.0}, "'train.lora_dropout' is 1.0")
params_case("config: zero epochs", {"train__num_train_epochs": 0.0}, "'train.num_train_epochs' is 0.0")
params_case("config: block size not a power of two", {"build__block_size": 48}, "'build.block_size' is 48")
params_case("config: accuracy level 0", {"build__accuracy_level": 0}, "'build.accuracy_level' is 0", "from 1 to 4")
params_case("config: unknown int4 algorithm", {"build__algorithm": "gptq"}, "'build.algorithm' is 'gptq'", "k_quant")
params_case("config: gate threshold above 1", {"eval__max_disagreement": 1.5}, "'eval.max_disagreement' is 1.5")
params_case(
    "config: split fractions leave nothing to train on",
    {"data__val_fraction": 0.5, "data__test_fraction": 0.5},
    "'data.val_fraction' (0.5) + 'data.test_fraction' (0.5)",
)
params_case("config: negative split fraction", {"data__val_fraction": -0.1}, "'data.val_fraction' is -0.1")
params_case("config: missing value (???)", {"data__source": "???"}, "'data.source' has no value")
params_case(
    "config: floating hub revision",
    {"model__source": "hub", "model__hub_id": "microsoft/Phi-3-mini-4k-instruct", "model__revision": "main"},
    "'model.revision' is 'main'",
    "model.allow_floating_revision=true",
)
override_case(
    "config: unknown group option hw=tpu",
    ["hw=tpu"],
    "config group 'hw' has no option 'tpu'",
    "available: azureml, cpu, cuda, cuda_multi",
)
override_case(
    "config: unknown key override",
    ["train.lerning_rate=0.1"],
    "unknown key 'train.lerning_rate'",
    "did you mean 'train.learning_rate'",
)
override_case("config: wrong type override", ["train.r=sixteen"], "'train.r'", "could not be converted to Integer")
override_case("config: out-of-range override", ["train.learning_rate=-1.0"], "'train.learning_rate' is -1.0")
override_case("config: missing value override (???)", ["data.source=???"], "'data.source' has no value")


@case("config: params.yaml missing", "absent.yaml: not found", "make params")
def _params_missing(ws: Workspace) -> list[str]:
    return stage("prepare", "--params", "absent.yaml")


@case("config: params.yaml is not YAML", "params.yaml:2: not valid YAML")
def _params_not_yaml(ws: Workspace) -> list[str]:
    ws.write("params.yaml", "model: [unclosed\n")
    return PREPARE


# ---------------------------------------------------------------------------- models


@case("models: base folder with no weights", "models/base: no weights", needs_models=True)
def _no_weights(ws: Workspace) -> list[str]:
    ws.path("models/base/model.safetensors").unlink()
    return MERGE


@case(
    "models: only pickle .bin weights",
    "models/base: only pickle weights (pytorch_model.bin)",
    "safe_serialization=True",
    needs_models=True,
)
def _pickle_weights(ws: Workspace) -> list[str]:
    ws.path("models/base/model.safetensors").rename(ws.path("models/base/pytorch_model.bin"))
    return MERGE


@case("models: truncated safetensors", "models/base/model.safetensors: truncated", needs_models=True)
def _truncated(ws: Workspace) -> list[str]:
    weights = ws.path("models/base/model.safetensors")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return MERGE


@case("models: corrupted safetensors header", "models/merged/model.safetensors: corrupted", needs_models=True)
def _corrupted(ws: Workspace) -> list[str]:
    weights = ws.path("models/merged/model.safetensors")
    data = bytearray(weights.read_bytes())
    data[8:40] = b"#" * 32
    weights.write_bytes(bytes(data))
    return cli("classify", "what a day", "--model-path", "models/merged")


@case("models: tokenizer missing", "models/base: no tokenizer", needs_models=True)
def _no_tokenizer(ws: Workspace) -> list[str]:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        ws.path(f"models/base/{name}").unlink()
    return MERGE


@case(
    "models: architecture the int4 builder does not support",
    "models/merged/config.json: architecture 'GPT2LMHeadModel' is not supported",
    needs_models=True,
)
def _unsupported_architecture(ws: Workspace) -> list[str]:
    config_path = ws.path("models/merged/config.json")
    config = json.loads(config_path.read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    config_path.write_text(json.dumps(config))
    return BUILD


@case(
    "models: adapter trained for another base",
    "adapter models/adapter does not fit the base model models/base",
    "size mismatch",
    needs_models=True,
)
def _adapter_for_another_base(ws: Workspace) -> list[str]:
    shutil.rmtree(ws.path("models/base"))
    assert ws.models is not None
    shutil.copytree(ws.models["other_base"], ws.path("models/base"))
    return MERGE


@case("models: adapter folder without adapter_config.json", "models/adapter: no adapter_config.json", needs_models=True)
def _adapter_without_config(ws: Workspace) -> list[str]:
    ws.path("models/adapter/adapter_config.json").unlink()
    return MERGE


@case("models: merged folder missing", "models/merged: model folder not found", "dvc checkout")
def _merged_missing(ws: Workspace) -> list[str]:
    shutil.rmtree(ws.path("models/merged"))
    return BUILD


@case("models: local model path is not a folder", "model.local_path /nonexistent/model: not a folder")
def _local_path_missing(ws: Workspace) -> list[str]:
    ws.set(model__source="local", model__local_path="/nonexistent/model")
    return PREPARE


# ---------------------------------------------------------------------------- classify


@case("classify: empty phrase", "the phrase is empty")
def _empty_phrase(ws: Workspace) -> list[str]:
    return cli("classify", "", "--model-path", "models/merged")


@case("classify: whitespace-only phrase", "the phrase is empty")
def _blank_phrase(ws: Workspace) -> list[str]:
    return cli("classify", "  \t ", "--model-path", "models/merged")


@case("classify: --scores with --generate", "--scores comes from label scoring")
def _scores_with_generation(ws: Workspace) -> list[str]:
    return cli("classify", "what a day", "--model-path", "models/merged", "--scores", "--generate")


@case("classify: no --model-path and no models/int4", "--model-path models/int4: model folder not found", "dvc pull")
def _default_model_path_missing(ws: Workspace) -> list[str]:
    shutil.rmtree(ws.path("models/int4"))
    return cli("classify", "what a day")


@case("classify: --model-path names no folder", "--model-path models/nothing: model folder not found")
def _model_path_missing(ws: Workspace) -> list[str]:
    return cli("classify", "what a day", "--model-path", "models/nothing")


@case("classify: --model-path is no model folder", "models/int4: neither an ONNX Runtime GenAI model")
def _model_path_not_a_model(ws: Workspace) -> list[str]:
    return cli("classify", "what a day", "--model-path", "models/int4")


@case("classify: input row without a phrase field", "in.jsonl:2: no 'phrase' field")
def _input_without_phrase(ws: Workspace) -> list[str]:
    ws.write("in.jsonl", '{"phrase": "fine"}\n{"text": "no phrase here"}\n')
    return cli("classify", "--input", "in.jsonl", "--output", "out.jsonl", "--model-path", "models/merged")


@case("classify: input row with invalid JSON", "in.jsonl:2: invalid JSON")
def _input_invalid_json(ws: Workspace) -> list[str]:
    ws.write("in.jsonl", '{"phrase": "fine"}\n{"phrase": \n')
    return cli("classify", "--input", "in.jsonl", "--output", "out.jsonl", "--model-path", "models/merged")


@case("classify: input file is not jsonl", "in.csv: --input must be a .jsonl file")
def _input_not_jsonl(ws: Workspace) -> list[str]:
    ws.write("in.csv", "phrase\nfine\n")
    return cli("classify", "--input", "in.csv", "--output", "out.jsonl", "--model-path", "models/merged")


@case("classify: input file not found", "missing.jsonl: file not found")
def _input_missing(ws: Workspace) -> list[str]:
    return cli("classify", "--input", "missing.jsonl", "--output", "out.jsonl", "--model-path", "models/merged")


@case("classify: --input without --output", "--input needs --output")
def _input_without_output(ws: Workspace) -> list[str]:
    ws.write("in.jsonl", '{"phrase": "fine"}\n')
    return cli("classify", "--input", "in.jsonl", "--model-path", "models/merged")


# ---------------------------------------------------------------------------- generation (kind=generation)

QA = "data/raw/qa.jsonl"
QA_ROWS = [
    (f"How do I pack item {n} for a trip?", f"Roll item {n} tightly and put it at the bottom.") for n in range(20)
]
GEN_BAD_LINE = len(QA_ROWS) + 1
CHAT = [{"role": "user", "content": "lights on"}, {"role": "assistant", "content": "done"}]


def qa_jsonl(extra: str = "") -> str:
    rows = "".join(json.dumps({"Question": q, "Best Answer": a}) + "\n" for q, a in QA_ROWS)
    return rows + (extra + "\n" if extra else "")


def chats_jsonl(extra: str) -> str:
    rows = [
        {"messages": [{"role": "user", "content": f"request {n}"}, {"role": "assistant", "content": "ok"}]}
        for n in range(20)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows) + extra + "\n"


def generation(ws: Workspace, fmt: str, content: str, name: str = "qa.jsonl", **changes: object) -> list[str]:
    """A generative task in `fmt` over `content`; `prepare` is the command."""
    ws.write(f"data/raw/{name}", content)
    settings = {"kind": "generation", "format": fmt, "labels": [], "instruction": None, "source": f"data/raw/{name}"}
    settings |= {"text_field": "Question", "label_field": "Best Answer", **changes}
    ws.set(**{f"data__{key}": value for key, value in settings.items()})
    return PREPARE


def generation_case(name: str, fmt: str, content: str, *expect: str, **changes: object) -> None:
    CASES[name] = Case(lambda ws: generation(ws, fmt, content, **changes), expect)


generation_case(
    "generation: missing prompt field",
    "fields",
    qa_jsonl('{"Best Answer": "Yes."}'),
    f"{QA}:{GEN_BAD_LINE}: missing field 'Question'",
)
generation_case(
    "generation: missing response field",
    "fields",
    qa_jsonl('{"Question": "Can I bring a kettle?"}'),
    f"{QA}:{GEN_BAD_LINE}: missing field 'Best Answer'",
)
generation_case(
    "generation: empty response",
    "fields",
    qa_jsonl('{"Question": "Can I bring a kettle?", "Best Answer": "  "}'),
    f"{QA}:{GEN_BAD_LINE}: field 'Best Answer' (the response) is empty",
)
generation_case(
    "generation: duplicate request",
    "fields",
    qa_jsonl('{"Question": "how do I pack ITEM 0 for a trip?", "Best Answer": "Again."}'),
    f"{QA}:{GEN_BAD_LINE}: duplicate request (same as line 1",
)
generation_case(
    "generation: messages is not a list",
    "messages",
    chats_jsonl('{"messages": "hello"}'),
    f"{QA}:{GEN_BAD_LINE}: field 'messages' is text, not a JSON list",
)
generation_case(
    "generation: messages is an empty list",
    "messages",
    chats_jsonl('{"messages": []}'),
    f"{QA}:{GEN_BAD_LINE}: field 'messages' must be a non-empty list",
    "an empty list",
)
generation_case(
    "generation: a turn is not a role/content object",
    "messages",
    chats_jsonl(json.dumps({"messages": [CHAT[0], ["assistant", "done"]]})),
    f"{QA}:{GEN_BAD_LINE}: turn 2 of 'messages' is not a",
)
generation_case(
    "generation: unknown role",
    "messages",
    chats_jsonl(json.dumps({"messages": [{"role": "bot", "content": "hi"}, CHAT[1]]})),
    f"{QA}:{GEN_BAD_LINE}: turn 1 has unknown role 'bot'",
)
generation_case(
    "generation: no assistant turn",
    "messages",
    chats_jsonl(json.dumps({"messages": [CHAT[0]]})),
    f"{QA}:{GEN_BAD_LINE}: 'messages' has no assistant turn",
)
generation_case(
    "generation: chat ends with a user turn",
    "messages",
    chats_jsonl(json.dumps({"messages": [*CHAT, {"role": "user", "content": "thanks"}]})),
    f"{QA}:{GEN_BAD_LINE}: 'messages' ends with a user turn",
)
generation_case(
    "generation: an assistant turn without text",
    "messages",
    chats_jsonl(json.dumps({"messages": [CHAT[0], {"role": "assistant", "content": ""}]})),
    f"{QA}:{GEN_BAD_LINE}: turn 2 (assistant) has no text",
)
generation_case(
    "generation: a system turn after the first",
    "messages",
    chats_jsonl(json.dumps({"messages": [CHAT[0], {"role": "system", "content": "be brief"}, CHAT[1]]})),
    f"{QA}:{GEN_BAD_LINE}: turn 2 is a system turn",
)
generation_case(
    "generation: text_template names a column the data lacks",
    "text_template",
    qa_jsonl(),
    f"{QA}:1: missing field 'answer'",
    prompt_template="Q: {Question}\nA: ",
    completion_template="{answer}",
)
generation_case(
    "generation: text_template's completion names no column",
    "text_template",
    qa_jsonl(),
    "data.completion_template 'Thanks!' names no column",
    prompt_template="Q: {Question}\nA: ",
    completion_template="Thanks!",
)
generation_case(
    "generation: a row longer than model.max_length",
    "fields",
    qa_jsonl(json.dumps({"Question": "Why? " * 200, "Best Answer": "Because."})),
    f"{QA}:{GEN_BAD_LINE}: ",
    "tokens with the chat template, over model.max_length=128",
)
params_case(
    "generation: text_template without its prompt/completion split",
    {
        "data__kind": "generation",
        "data__labels": [],
        "data__format": "text_template",
        "data__prompt_template": "Q: {q}",
    },
    "'data.completion_template' is empty; format=text_template needs both",
)
params_case(
    "generation: a label set for a generative task",
    {"data__kind": "generation", "data__instruction": None},
    "'data.labels' is ['sad', 'joy', 'fear', 'surprise']; kind=generation has no label set",
)
params_case(
    "generation: a classification task with a chat column",
    {"data__format": "messages"},
    "'data.format' is 'messages', but kind=classification reads a text and a label column",
)


@case("generation: --max-new-tokens out of range", "max_new_tokens is 0; it must be at least 1")
def _max_new_tokens(ws: Workspace) -> list[str]:
    return cli("generate", "turn on the lights", "--max-new-tokens", "0")


@case("generation: --temperature out of range", "temperature is 5.0; it must be from 0 (greedy) to 2")
def _temperature(ws: Workspace) -> list[str]:
    return cli("generate", "turn on the lights", "--temperature", "5")


@case("generation: generate with a classification model", "fine-tuned for classification", needs_models=True)
def _generate_with_a_classifier(ws: Workspace) -> list[str]:
    return cli("generate", "turn on the lights", "--model-path", "models/merged")


# ---------------------------------------------------------------------------- fixtures and the test


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> dict[str, Path]:
    """Real tiny folders: a base with its task card, a LoRA adapter for it, and a base of another shape."""
    from peft import get_peft_model

    from slmtune.config import compose
    from slmtune.models import load_causal_lm, load_tokenizer, materialise_base
    from slmtune.prompts import build_task
    from slmtune.training import lora_config

    root = tmp_path_factory.mktemp("models")
    texts = [phrase for phrase, _ in GOOD_ROWS] * 4 + LABELS
    folders = {"base": root / "base", "other_base": root / "other_base", "adapter": root / "adapter"}
    for name, overrides in (("base", []), ("other_base", ["model.tiny.hidden_size=64"])):
        params = compose(overrides)
        folders[name].mkdir()
        materialise_base(params.model, texts, params.seed, folders[name])
        build_task(load_tokenizer(folders[name]), params.data.instruction, LABELS).save(folders[name])
    params = compose()
    get_peft_model(load_causal_lm(folders["base"]), lora_config(params)).save_pretrained(str(folders["adapter"]))
    shutil.copy2(folders["base"] / "slmtune_task.json", folders["adapter"] / "slmtune_task.json")
    return folders


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The command in this process (a subprocess would add only its start-up), debug mode off."""
    debug = os.environ.pop("SLMTUNE_DEBUG", None)
    try:
        return run_module(args, cwd)
    finally:
        if debug is not None:
            os.environ["SLMTUNE_DEBUG"] = debug


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
    groups = {name.split(":")[0] for name in CASES}
    assert groups == {"data", "config", "models", "classify", "generation"}
    assert sum(name.startswith("generation:") for name in CASES) >= 15


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_clear_message_and_changes_nothing(name, tmp_path, request):
    bad = CASES[name]
    models = request.getfixturevalue("model_folders") if bad.needs_models else None
    ws = Workspace(tmp_path / "ws", models)
    args = bad.setup(ws)
    before = ws.snapshot()

    result = run_python(args, ws.root)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in bad.expect:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    if "slmtune.stages." in args[1]:
        assert RESTORE_HINT in result.stderr
    assert ws.snapshot() == before


def test_leakage_between_splits_names_both_splits_and_lines():
    splits = {
        "train": [Example("I miss you", "sad", 3)],
        "val": [],
        "test": [Example("i  MISS you", "sad", 9)],
    }
    with pytest.raises(DataError) as caught:
        check_disjoint(splits, source=DATA)
    message = str(caught.value)
    assert f"{DATA}:9: leakage" in message
    assert "'train' (line 3)" in message and "'test'" in message


# ---------------------------------------------------------------------------- accepted on purpose


def test_label_case_variants_are_accepted_and_normalised(tmp_path):
    path = tmp_path / "tone.jsonl"
    path.write_text(good_jsonl([("Best day ever!", "Joy "), ("I miss you", "SAD"), ("Eek!", " fear")]))
    assert [e.label for e in load_examples(path, LABELS)] == ["joy", "sad", "fear"]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    jsonl, table = tmp_path / "tone.jsonl", tmp_path / "tone.csv"
    jsonl.write_bytes(b"\xef\xbb\xbf" + good_jsonl(GOOD_ROWS[:2]).encode())
    table.write_bytes(b"\xef\xbb\xbfphrase,tone\nI miss you so much,sad\n")
    assert [e.phrase for e in load_examples(jsonl, LABELS)] == [GOOD_ROWS[0][0], GOOD_ROWS[1][0]]
    assert [e.phrase for e in load_examples(table, LABELS)] == [GOOD_ROWS[0][0]]


def test_windows_line_endings_are_accepted(tmp_path):
    path = tmp_path / "tone.jsonl"
    path.write_bytes(good_jsonl(GOOD_ROWS[:3]).replace("\n", "\r\n").encode())
    assert len(load_examples(path, LABELS)) == 3


# ---------------------------------------------------------------------------- debug mode


def test_debug_flag_adds_the_traceback_to_the_message(tmp_path):
    ws = Workspace(tmp_path / "ws", None)
    ws.data(with_line('{"phrase": "how dare you", "tone": "anger"}'))
    result = run_python(stage("prepare", "--debug"), ws.root)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert f"{DATA}:{BAD_LINE}: unknown label 'anger'" in result.stderr


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--debug", "classify", ""], {}),
        (["classify", "", "--debug"], {}),
        (["classify", ""], {"SLMTUNE_DEBUG": "1"}),
    ],
    ids=["flag before the command", "flag after the command", "SLMTUNE_DEBUG=1"],
)
def test_debug_mode_adds_the_traceback_to_the_cli_message(tmp_path, argv, env):
    result = subprocess.run(
        [sys.executable, "-m", "slmtune.cli", *argv, "--model-path", "x"],
        cwd=tmp_path,
        env={**tool_env(), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "the phrase is empty" in result.stderr


def test_an_unexpected_error_is_one_line_with_a_pointer_to_debug_mode(capsys, monkeypatch):
    from slmtune.stages.common import run

    monkeypatch.delenv("SLMTUNE_DEBUG", raising=False)

    def body() -> None:
        raise KeyError("surprise")

    with pytest.raises(SystemExit) as exited:
        run("demo", body)
    err = capsys.readouterr().err
    assert exited.value.code == 1
    assert "stage demo failed: unexpected error: KeyError: 'surprise'" in err
    assert "rerun with --debug or SLMTUNE_DEBUG=1 for the traceback" in err
    assert "Traceback" not in err and RESTORE_HINT in err


def test_an_unexpected_error_keeps_its_traceback_in_debug_mode(capsys, monkeypatch):
    from slmtune.stages.common import run

    monkeypatch.setenv("SLMTUNE_DEBUG", "1")

    def body() -> None:
        raise KeyError("surprise")

    with pytest.raises(SystemExit):
        run("demo", body)
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "rerun with --debug" not in err
