"""Configuration: the structured schema of every Hydra group, composition, and validation.

`conf/` is the single source of configuration. DVC composes it into `params.yaml` on
`dvc exp run`; `slmtune params` does the same for plain `dvc repro`. Stages read
`params.yaml` through `load_params`, which validates it against the schema below so a
typo'd key or a wrong type fails with the key named.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from slmtune.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the installed project's


def project_conf_dir() -> Path:
    """The `conf/` of the project in the current folder (where `dvc exp run` composes), else the installed one."""
    local = Path.cwd() / "conf"
    return local if (local / "config.yaml").is_file() else CONF_DIR


GROUPS = ("hw", "model", "data", "train", "build", "eval")


@dataclass
class AzureMLConfig:
    """Where the `azureml` profile submits training (values may also come from the environment)."""

    subscription_id: str | None = None  # or AZURE_SUBSCRIPTION_ID
    resource_group: str | None = None  # or AZURE_RESOURCE_GROUP
    workspace: str | None = None  # or AZUREML_WORKSPACE
    compute: str | None = None  # a GPU compute cluster name
    experiment_name: str = "slmtune"
    base_image: str = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"
    instance_count: int = 1


@dataclass
class HwConfig:
    """A hardware profile: where training and inference run, and how."""

    name: str = "cpu"
    device: str = "cpu"  # cpu | cuda
    dtype: str = "float32"  # float32 | bfloat16 | float16
    min_gpus: int = 0
    execution_provider: str = "cpu"  # onnxruntime-genai builder target: cpu | cuda
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    num_threads: int = 0  # torch and ONNX Runtime intra-op threads; 0 = every core
    launcher: str = "python"  # python | torchrun | azureml: how `make train` starts train_lora
    num_processes: int = 1  # processes per node for torchrun; 0 = one per local GPU
    distributed: str = "none"  # none | ddp | fsdp
    optim: str = "adamw_torch"  # transformers optimizer name (paged_adamw_32bit for QLoRA on CUDA)
    azureml: AzureMLConfig = field(default_factory=AzureMLConfig)


@dataclass
class TinyArchitecture:
    """Shape of the embedded tiny Phi-3 built by `prepare`."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 256


@dataclass
class ModelConfig:
    """Where the base model comes from, how prompts look, and what LoRA adapts."""

    name: str = "tiny_phi3"
    source: str = "tiny"  # tiny | hub | local
    hub_id: str | None = None
    revision: str | None = None
    local_path: str | None = None
    trust_remote_code: bool = False  # true runs Python code from the model folder (warned about)
    allow_floating_revision: bool = False  # true accepts a branch or tag as model.revision
    chat_template: str | None = None  # Jinja template; null keeps the tokenizer's own
    max_length: int = 128
    lora_target_modules: list[str] = field(default_factory=lambda: ["qkv_proj", "o_proj"])
    modules_to_save: list[str] = field(default_factory=list)
    tiny: TinyArchitecture = field(default_factory=TinyArchitecture)


@dataclass
class DataConfig:
    """The labelled phrases and how they are split."""

    name: str = "tone"
    source: str = "data/raw/tone.jsonl"  # a local file, a hub data set (owner/name) or an azureml:// URI
    revision: str | None = None  # hub data sets: the commit to read
    hub_split: str = "train"  # hub data sets: the split to read (prepare makes its own train/val/test)
    allow_floating_revision: bool = False
    text_field: str = "phrase"
    label_field: str = "tone"
    labels: list[str] = field(default_factory=lambda: ["sad", "joy", "fear", "surprise"])
    instruction: str = "Classify the tone of this phrase as sad, joy, fear or surprise."  # the task's prompt
    val_fraction: float = 0.1
    test_fraction: float = 0.15


@dataclass
class TrainConfig:
    """The fine-tuning method (peft) and the trainer's arguments."""

    method: str = "lora"  # lora | qlora | dora: a name; the keys below make the difference
    use_dora: bool = False  # DoRA: weight-decomposed low-rank adaptation (peft)
    load_in_4bit: bool = False  # QLoRA: train against a 4-bit (bitsandbytes) base
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = True
    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    learning_rate: float = 2.0e-3
    num_train_epochs: float = 5.0
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.05  # < 1: a fraction of all steps (transformers semantics)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 5
    save_steps: int = 50  # checkpoint interval; a killed run resumes from the last one
    paged_optimizer: bool = False  # paged AdamW on CUDA (QLoRA)
    eval_strategy: str = "epoch"
    padding_free: bool = False  # flatten each batch into one unpadded row (trl padding_free); same loss


@dataclass
class BuildConfig:
    """onnxruntime-genai model builder options (int4 weight-only MatMulNBits quantization)."""

    precision: str = "int4"
    block_size: int = 32  # weights per quantization block: 16, 32, 64, 128 or 256
    accuracy_level: int = 4  # MatMul compute: 1 fp32, 2 fp16, 3 bf16, 4 int8 activations
    symmetric: bool = True  # true: int4 around zero; false: uint4 with a zero point per block
    algorithm: str = "default"  # the builder's algo_config: default | rtn | k_quant
    quantize_embeddings: bool = False  # also int4 the token embedding (Gather): smaller, less exact


@dataclass
class EvalConfig:
    """Which artifacts to evaluate and how."""

    artifacts: list[str] = field(default_factory=lambda: ["base", "adapter", "merged", "int4"])
    batch_size: int = 32
    max_new_tokens: int = 4
    latency_examples: int = 16
    latency_repetitions: int = 3
    max_int4_drop: float = 0.02  # gate: int4 accuracy may fall at most this far below merged's
    max_disagreement: float = 0.05  # gate: share of phrases whose generated label int4 may change


@dataclass
class Params:
    """The whole composed configuration (`params.yaml`)."""

    seed: int = 42
    hw: HwConfig = field(default_factory=HwConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "hw": {
        "device": ("cpu", "cuda"),
        "dtype": ("float32", "bfloat16", "float16"),
        "execution_provider": ("cpu", "cuda"),
        "launcher": ("python", "torchrun", "azureml"),
        "distributed": ("none", "ddp", "fsdp"),
    },
    "model": {"source": ("tiny", "hub", "local")},
    "train": {"method": ("lora", "qlora", "dora"), "bnb_4bit_quant_type": ("nf4", "fp4")},
    "build": {"precision": ("int4",), "algorithm": ("default", "rtn", "k_quant")},
}

BLOCK_SIZES = (16, 32, 64, 128, 256)
ARTIFACTS = ("base", "adapter", "merged", "int4")
COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
MISSING = "???"

# (key, test, what the value must be): single-key range checks, in schema order.
RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("seed", lambda v: 0 <= v < 2**32, "an integer from 0 to 2**32 - 1"),
    ("hw.min_gpus", lambda v: v >= 0, ">= 0"),
    ("hw.per_device_train_batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("hw.gradient_accumulation_steps", lambda v: v >= 1, "an integer >= 1"),
    ("hw.num_threads", lambda v: v >= 0, ">= 0 (0 uses every core)"),
    ("hw.num_processes", lambda v: v >= 0, ">= 0 (0 starts one process per GPU)"),
    ("hw.azureml.instance_count", lambda v: v >= 1, "an integer >= 1"),
    ("model.max_length", lambda v: v >= 8, "an integer >= 8 (tokens per prompt and answer)"),
    ("model.tiny.vocab_size", lambda v: v >= 261, "an integer >= 261 (256 bytes and 5 special tokens)"),
    ("model.tiny.hidden_size", lambda v: v >= 1, "an integer >= 1"),
    ("model.tiny.intermediate_size", lambda v: v >= 1, "an integer >= 1"),
    ("model.tiny.num_hidden_layers", lambda v: v >= 1, "an integer >= 1"),
    ("model.tiny.num_attention_heads", lambda v: v >= 1, "an integer >= 1"),
    ("model.tiny.num_key_value_heads", lambda v: v >= 1, "an integer >= 1"),
    ("model.tiny.max_position_embeddings", lambda v: v >= 8, "an integer >= 8"),
    ("data.val_fraction", lambda v: 0 < v < 1, "a fraction strictly between 0 and 1"),
    ("data.test_fraction", lambda v: 0 < v < 1, "a fraction strictly between 0 and 1"),
    ("train.r", lambda v: v >= 1, "an integer >= 1 (the LoRA rank, e.g. 16)"),
    ("train.lora_alpha", lambda v: v > 0, "> 0 (the LoRA scaling numerator, e.g. 32)"),
    ("train.lora_dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.learning_rate", lambda v: v > 0 and math.isfinite(v), "a positive number, e.g. 2.0e-4"),
    ("train.num_train_epochs", lambda v: v > 0 and math.isfinite(v), "> 0"),
    ("train.warmup_steps", lambda v: v >= 0, ">= 0 (below 1: a fraction of all steps)"),
    ("train.weight_decay", lambda v: v >= 0, ">= 0"),
    ("train.max_grad_norm", lambda v: v > 0, "> 0"),
    ("train.logging_steps", lambda v: v >= 1, "an integer >= 1"),
    ("train.save_steps", lambda v: v >= 1, "an integer >= 1"),
    (
        "build.block_size",
        lambda v: v in BLOCK_SIZES,
        "a power of two from 16 to 256 (16, 32, 64, 128, 256)",
    ),
    ("build.accuracy_level", lambda v: 1 <= v <= 4, "an integer from 1 to 4 (1 fp32, 2 fp16, 3 bf16, 4 int8)"),
    ("eval.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("eval.max_new_tokens", lambda v: v >= 1, "an integer >= 1"),
    ("eval.latency_examples", lambda v: v >= 1, "an integer >= 1"),
    ("eval.latency_repetitions", lambda v: v >= 1, "an integer >= 1"),
    ("eval.max_int4_drop", lambda v: 0 <= v <= 1, "a fraction from 0 to 1 (0.02 = two points of accuracy)"),
    ("eval.max_disagreement", lambda v: 0 <= v <= 1, "a fraction from 0 to 1 (0.05 = 5% of test phrases)"),
)

PARAMS_HINT = (
    "params.yaml is generated from conf/: fix conf/ (or your `dvc exp run -S` override) "
    "and recompose it with `make params` or `slmtune params KEY=VALUE`"
)
CONF_HINT = "fix conf/ or the override"


def validate(raw: dict[str, Any] | DictConfig, origin: str = "params", hint: str = CONF_HINT) -> Params:
    """Check `raw` against the schema; return a typed `Params` or raise ConfigError naming the key.

    `origin` says where the values came from (a file, or conf/ with overrides); `hint` what
    the user should do about a bad value.
    """
    if isinstance(raw, DictConfig):
        raw = OmegaConf.to_container(raw, resolve=False)  # type: ignore[assignment]
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of config groups at the top level; {hint}")
    missing = next(_missing_keys(raw), None)
    if missing is not None:
        raise ConfigError(
            f"{origin}: '{missing}' has no value ('{MISSING}' marks a value you must give); "
            f"set it in conf/ or with an override such as `{missing}=...`"
        )
    params = _to_params(raw, origin, hint)
    for check in (_check_choices, _check_ranges, _check_data, _check_model, _check_eval):
        problem = check(params)
        if problem:
            raise ConfigError(f"{origin}: {problem}; {hint}")
    return params


def _missing_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys whose value is OmegaConf's mandatory-value marker '???'."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _missing_keys(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _missing_keys(value, f"{prefix}{index}.")
    elif node == MISSING:
        yield prefix.rstrip(".")


def _to_params(raw: dict[str, Any], origin: str, hint: str) -> Params:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), raw)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or _first_bad_section(raw) or "the top level"
        detail = str(getattr(err, "msg", err)).splitlines()[0]
        raise ConfigError(
            f"{origin}: invalid configuration at key '{key}': {detail}{_did_you_mean(key)}; {hint}"
        ) from None


MOVED_KEYS = {"model.instruction": "data.instruction"}  # keys of earlier versions, and where they went


def _section_type(parts: list[str]) -> type | None:
    """The schema dataclass at a dotted path (`["train"]` -> TrainConfig), or None."""
    node: Any = Params
    for part in parts:
        node = get_type_hints(node).get(part)
        if node is None or not is_dataclass(node):
            return None
    return node


def _first_bad_section(raw: dict[str, Any]) -> str | None:
    """The first top-level section given as something other than a mapping."""
    return next((name for name in raw if _section_type([name]) and not isinstance(raw[name], dict)), None)


def _did_you_mean(key: str) -> str:
    """' (did you mean 'train.learning_rate'?)' for a misspelt or moved key, else ''."""
    if key in MOVED_KEYS:
        return f" (it moved to '{MOVED_KEYS[key]}')"
    *parents, last = key.split(".")
    section = _section_type(parents)
    names = [f.name for f in fields(section)] if section else []
    if not names or last in names:
        return ""
    close = difflib.get_close_matches(last, names, n=1)
    return f" (did you mean '{'.'.join([*parents, close[0]])}'?)" if close else ""


def _unknown_key(key: str) -> bool:
    """True when `key`'s parent is a schema section that has no field named like its last part."""
    *parents, last = key.split(".")
    section = _section_type(parents)
    return section is not None and last not in {f.name for f in fields(section)}


def _value(params: Params, key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _check_choices(params: Params) -> str | None:
    for group, keys in CHOICES.items():
        section = getattr(params, group)
        for key, allowed in keys.items():
            value = getattr(section, key)
            if value not in allowed:
                return f"'{group}.{key}' is {value!r}; expected one of {list(allowed)}"
    return None


def _check_ranges(params: Params) -> str | None:
    for key, test, requirement in RANGES:
        value = _value(params, key)
        if not test(value):
            return f"'{key}' is {value!r}; it must be {requirement}"
    return None


def _check_data(params: Params) -> str | None:
    data = params.data
    floating = _check_data_revision(data)
    if floating:
        return floating
    total = data.val_fraction + data.test_fraction
    if total > 0.9 + 1e-9:
        return (
            f"'data.val_fraction' ({data.val_fraction}) + 'data.test_fraction' ({data.test_fraction}) = {total:g}; "
            "train gets the rest, so keep the sum at most 0.9"
        )
    folded = [label.strip().casefold() for label in data.labels]
    if len(data.labels) < 2 or len(set(folded)) != len(folded) or not all(folded):
        return (
            f"'data.labels' is {list(data.labels)}; it must hold at least two distinct, non-empty labels (case aside)"
        )
    if data.text_field == data.label_field:
        return f"'data.text_field' and 'data.label_field' are both {data.text_field!r}; they must differ"
    return None


def _check_data_revision(data: DataConfig) -> str | None:
    """A hub data set needs a pinned revision (a commit), as a hub model does."""
    from slmtune.errors import DataError
    from slmtune.sources import source_kind

    try:
        if source_kind(data.source) != "hub":
            return None
    except DataError as err:
        return str(err)
    if not data.revision:
        return (
            f"'data.revision' is required when data.source is a hub data set ({data.source!r}): pin a commit hash "
            "(40 hex digits) from the data set's history on the hub"
        )
    if not COMMIT_HASH.fullmatch(data.revision) and not data.allow_floating_revision:
        return (
            f"'data.revision' is {data.revision!r}, a branch or tag whose files can change; pin a commit hash "
            "(40 hex digits), or set data.allow_floating_revision=true"
        )
    return None


def _check_model(params: Params) -> str | None:
    model = params.model
    if model.source == "hub":
        if not (model.hub_id and model.revision):
            return "'model.hub_id' and 'model.revision' are required when model.source=hub"
        if not COMMIT_HASH.fullmatch(model.revision) and not model.allow_floating_revision:
            return (
                f"'model.revision' is {model.revision!r}, a branch or tag whose files can change; pin a commit hash "
                "(40 hex digits, from the model's commit history on the hub), or set "
                "model.allow_floating_revision=true to accept whatever it points at when `prepare` runs"
            )
    if model.source == "local" and not model.local_path:
        return "'model.local_path' is required when model.source=local"
    if model.source == "tiny":
        tiny = model.tiny
        if tiny.hidden_size % tiny.num_attention_heads or tiny.num_attention_heads % tiny.num_key_value_heads:
            return (
                f"'model.tiny' has hidden_size {tiny.hidden_size}, {tiny.num_attention_heads} attention heads and "
                f"{tiny.num_key_value_heads} key/value heads; heads must divide hidden_size and kv heads divide heads"
            )
        if model.max_length > tiny.max_position_embeddings:
            return (
                f"'model.max_length' ({model.max_length}) exceeds the tiny model's context "
                f"'model.tiny.max_position_embeddings' ({tiny.max_position_embeddings})"
            )
    return None


def _check_eval(params: Params) -> str | None:
    unknown = set(params.eval.artifacts) - set(ARTIFACTS)
    if unknown:
        return f"'eval.artifacts' has unknown entries {sorted(unknown)}; expected some of {list(ARTIFACTS)}"
    return None


def compose(overrides: list[str] | None = None, conf_dir: Path | None = None) -> dict[str, Any]:
    """Compose `conf/config.yaml` with Hydra overrides, exactly as DVC's Hydra integration does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    conf_dir = conf_dir or project_conf_dir()
    overrides = list(overrides or [])
    for override in overrides:
        _check_override(override, conf_dir)
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except HydraException as err:
        detail = str(err).split("\nConfig search path")[0].strip()
        raise ConfigError(f"{conf_dir}: cannot compose configuration with overrides {overrides}: {detail}") from None
    raw = OmegaConf.to_container(cfg, resolve=True)
    validate(raw, origin=f"{conf_dir} with overrides {overrides}")  # type: ignore[arg-type]
    return raw  # type: ignore[return-value]


def group_options(group: str, conf_dir: Path) -> list[str]:
    """The options of a config group: the YAML files in conf/<group>/."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _check_override(override: str, conf_dir: Path) -> None:
    """Name the group and its options for `hw=tpu`, and suggest the key for a misspelt `train.lerning_rate=...`."""
    match = re.fullmatch(r"([~+]*)([\w.]+)=(.*)", override.strip(), flags=re.DOTALL)
    if match is None:
        return
    prefix, key, value = match.groups()
    if key in GROUPS and not prefix:
        options = group_options(key, conf_dir)
        if value not in options:
            raise ConfigError(
                f"override '{override}': config group '{key}' has no option {value!r} "
                f"(no {conf_dir / key / value}.yaml); available: {', '.join(options)}"
            )
    elif not prefix and _unknown_key(key):
        raise ConfigError(
            f"override '{override}': unknown key '{key}'{_did_you_mean(key)}; "
            "the schema in src/slmtune/config.py lists every key"
        )


def write_params(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Compose the configuration and write it to `path` (normally `params.yaml`) atomically."""
    from slmtune.atomic import atomic_write_text

    raw = compose(overrides)
    # The same YAML that DVC's Hydra integration writes on `dvc exp run`, so neither rewrites the other.
    atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False))
    return raw


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate `params.yaml`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run `make params` to compose it from conf/")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{_yaml_place(path, err)}: not valid YAML ({_yaml_problem(err)}); {PARAMS_HINT}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config groups at the top level; {PARAMS_HINT}")
    return validate(raw, origin=str(path), hint=PARAMS_HINT)


def _yaml_place(path: Path, err: Exception) -> str:
    mark = getattr(err, "problem_mark", None)
    return f"{path}:{mark.line + 1}" if mark is not None else str(path)


def _yaml_problem(err: Exception) -> str:
    problem = getattr(err, "problem", None)
    return str(problem) if problem else str(err).splitlines()[0]
