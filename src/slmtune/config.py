"""Configuration: the structured schema of every Hydra group, composition, and validation.

`conf/` is the single source of configuration. DVC composes it into `params.yaml` on
`dvc exp run`; `slmtune params` does the same for plain `dvc repro`. Stages read
`params.yaml` through `load_params`, which validates it against the schema below so a
typo'd key or a wrong type fails with the key named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from slmtune.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
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
    trust_remote_code: bool = False
    chat_template: str | None = None  # Jinja template; null keeps the tokenizer's own
    instruction: str = "Classify the tone of this phrase as sad, joy, fear or surprise."
    max_length: int = 128
    lora_target_modules: list[str] = field(default_factory=lambda: ["qkv_proj", "o_proj"])
    modules_to_save: list[str] = field(default_factory=list)
    tiny: TinyArchitecture = field(default_factory=TinyArchitecture)


@dataclass
class DataConfig:
    """The labelled phrases and how they are split."""

    name: str = "tone"
    source: str = "data/raw/tone.jsonl"
    text_field: str = "phrase"
    label_field: str = "tone"
    labels: list[str] = field(default_factory=lambda: ["sad", "joy", "fear", "surprise"])
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


@dataclass
class BuildConfig:
    """onnxruntime-genai model builder options."""

    precision: str = "int4"
    block_size: int = 32
    accuracy_level: int = 4
    symmetric: bool = True


@dataclass
class EvalConfig:
    """Which artifacts to evaluate and how."""

    artifacts: list[str] = field(default_factory=lambda: ["base", "adapter", "merged", "int4"])
    batch_size: int = 32
    max_new_tokens: int = 4
    latency_examples: int = 16
    latency_repetitions: int = 3


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
    "build": {"precision": ("int4",)},
}


def validate(raw: dict[str, Any] | DictConfig, origin: str = "params") -> Params:
    """Check `raw` against the schema; return a typed `Params` or raise ConfigError naming the key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), raw)
        params: Params = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{origin}: invalid configuration at key '{key}': {err.msg}") from None
    _check_choices(params, origin)
    _check_ranges(params, origin)
    return params


def _check_choices(params: Params, origin: str) -> None:
    for group, keys in CHOICES.items():
        section = getattr(params, group)
        for key, allowed in keys.items():
            value = getattr(section, key)
            if value not in allowed:
                raise ConfigError(f"{origin}: '{group}.{key}' is {value!r}; expected one of {list(allowed)}")


def _check_ranges(params: Params, origin: str) -> None:
    data = params.data
    if not 0 < data.val_fraction < 1 or not 0 < data.test_fraction < 1:
        raise ConfigError(f"{origin}: 'data.val_fraction' and 'data.test_fraction' must lie in (0, 1)")
    if data.val_fraction + data.test_fraction >= 0.9:
        raise ConfigError(f"{origin}: 'data.val_fraction' + 'data.test_fraction' leaves no training data")
    if len(set(data.labels)) != len(data.labels) or len(data.labels) < 2:
        raise ConfigError(f"{origin}: 'data.labels' must hold at least two distinct labels")
    if params.build.block_size not in (16, 32, 64, 128, 256):
        raise ConfigError(f"{origin}: 'build.block_size' must be one of 16, 32, 64, 128, 256")
    if params.build.accuracy_level not in (0, 1, 2, 3, 4):
        raise ConfigError(f"{origin}: 'build.accuracy_level' must be 0-4")
    model = params.model
    if model.source == "hub" and not (model.hub_id and model.revision):
        raise ConfigError(f"{origin}: 'model.hub_id' and 'model.revision' are required when model.source=hub")
    if model.source == "local" and not model.local_path:
        raise ConfigError(f"{origin}: 'model.local_path' is required when model.source=local")
    unknown = set(params.eval.artifacts) - {"base", "adapter", "merged", "int4"}
    if unknown:
        raise ConfigError(f"{origin}: 'eval.artifacts' has unknown entries {sorted(unknown)}")


def compose(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """Compose `conf/config.yaml` with Hydra overrides, exactly as DVC's Hydra integration does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    except HydraException as err:
        raise ConfigError(f"{conf_dir}: cannot compose configuration: {err}") from None
    raw = OmegaConf.to_container(cfg, resolve=True)
    validate(raw, origin=f"{conf_dir} with overrides {overrides or []}")
    return raw  # type: ignore[return-value]


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
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(raw, origin=str(path))
