"""The typed schema of every configuration group: types, allowed values and one-line docs.

Values live in `conf/` only (DVC composes it without importing slmtune): no field here has a
default, so nothing can drift from the YAML. Each field's metadata says what it means and,
where it matters, what it may be: a range (`check` with the words `must_be`) or `choices`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BLOCK_SIZES = (16, 32, 64, 128, 256)
# The builder's MatMul groups that `build.int8_matmuls` may keep at int8: the output head, and llama.cpp's
# "mixed" choice (the qkv and down projections of the first and last eighth of the layers and every third one).
INT8_MATMUL_GROUPS = ("last_matmul", "mixed_layers")
KINDS = ("classification", "generation")
FORMATS = ("fields", "messages", "text_template")


def setting(doc: str, check: Callable[[Any], bool] | None = None, must_be: str = "", choices: tuple = ()) -> Any:
    """A schema field without a default: its doc, and the check or choices its value must pass."""
    return field(metadata={"doc": doc, "check": check, "must_be": must_be, "choices": choices})


def at_least(low: float, unit: str = "") -> dict[str, Any]:
    """`check` and `must_be` for a value >= `low`."""
    return {"check": lambda v: v >= low, "must_be": f">= {low:g}{unit}"}


def fraction(low_open: bool = False, high_open: bool = False) -> dict[str, Any]:
    """`check` and `must_be` for a fraction in [0, 1], either end open."""

    def check(v: float) -> bool:
        return (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)

    return {"check": check, "must_be": f"a fraction in {'(' if low_open else '['}0, 1{')' if high_open else ']'}"}


def positive_finite() -> dict[str, Any]:
    return {"check": lambda v: v > 0 and math.isfinite(v), "must_be": "a positive, finite number"}


@dataclass
class AzureMLConfig:
    """Where the `azureml` profile submits training (the IDs may also come from the environment)."""

    subscription_id: str | None = setting("Azure subscription ID, or AZURE_SUBSCRIPTION_ID")
    resource_group: str | None = setting("resource group, or AZURE_RESOURCE_GROUP")
    workspace: str | None = setting("Azure ML workspace, or AZUREML_WORKSPACE")
    compute: str | None = setting("GPU compute cluster name, or AZUREML_COMPUTE")
    experiment_name: str = setting("Azure ML experiment the jobs are filed under")
    base_image: str = setting("Docker image the job's environment is built on")
    instance_count: int = setting("nodes; above 1, a distributed PyTorch job", **at_least(1))
    process_count_per_instance: int = setting("training processes per node (one per GPU)", **at_least(1))
    hf_token_secret: str | None = setting("Key Vault secret with a Hugging Face token for the job; null sends none")
    key_vault: str | None = setting("Key Vault (name or URL) holding hf_token_secret; null: the workspace's own")


@dataclass
class HwConfig:
    """A hardware profile: where training and inference run, and how."""

    name: str = setting("profile name")
    device: str = setting("torch device", choices=("cpu", "cuda"))
    dtype: str = setting("training and inference dtype", choices=("float32", "bfloat16", "float16"))
    min_gpus: int = setting("GPUs the profile needs", **at_least(0))
    execution_provider: str = setting("onnxruntime-genai builder target", choices=("cpu", "cuda"))
    per_device_train_batch_size: int = setting("rows per device and step", **at_least(1))
    gradient_accumulation_steps: int = setting("batches per optimizer step", **at_least(1))
    gradient_checkpointing: bool = setting("recompute activations in the backward pass (less memory)")
    num_threads: int = setting("torch and ONNX Runtime intra-op threads; 0 = every core", **at_least(0))
    cpu_isa: str | None = setting(
        "instruction set every CPU kernel library is pinned to (null: each library picks the machine's best)",
        choices=(None, "avx2"),
    )
    launcher: str = setting("how `make train` starts train_lora", choices=("python", "torchrun", "azureml"))
    num_processes: int = setting("processes per node for torchrun; 0 = one per local GPU", **at_least(0))
    distributed: str = setting("data-parallel strategy", choices=("none", "ddp", "fsdp"))
    optim: str = setting("transformers optimizer name (paged_adamw_32bit for QLoRA on CUDA)")
    attn_implementation: str = setting(
        "transformers attention kernel for training", choices=("eager", "sdpa", "flash_attention_2")
    )
    azureml: AzureMLConfig = setting("Azure ML submission settings (launcher=azureml)")


@dataclass
class TinyArchitecture:
    """Shape of a Phi-3 built from random weights by `prepare` (the tiny default, the bench model), and
    how many epochs `prepare` then pretrains it as a language model."""

    vocab_size: int = setting("vocabulary size", check=lambda v: v >= 261, must_be=">= 261 (256 bytes, 5 specials)")
    hidden_size: int = setting("hidden size", **at_least(1))
    intermediate_size: int = setting("MLP size", **at_least(1))
    num_hidden_layers: int = setting("decoder layers", **at_least(1))
    num_attention_heads: int = setting("attention heads", **at_least(1))
    num_key_value_heads: int = setting("key/value heads", **at_least(1))
    max_position_embeddings: int = setting("context length", **at_least(8))
    pretrain_epochs: int = setting(
        "epochs `prepare` trains the base as a language model on the training split (0: random weights)",
        **at_least(0),
    )
    pretrain_learning_rate: float = setting(
        "that pretraining's learning rate", check=lambda v: v > 0, must_be="above 0"
    )


@dataclass
class ModelConfig:
    """Where the base model comes from, how prompts look, and what LoRA adapts."""

    name: str = setting("profile name")
    source: str = setting("where the weights come from", choices=("tiny", "hub", "local", "azureml"))
    hub_id: str | None = setting("hub model id (source=hub)")
    revision: str | None = setting("hub commit (40 hex digits) to download (source=hub)")
    local_path: str | None = setting("model folder to copy (source=local)")
    uri: str | None = setting(
        "Azure ML registry model (source=azureml): azureml://registries/<registry>/models/<name>/versions/<version>"
    )
    registry_name: str | None = setting("instead of model.uri (source=azureml): the registry, e.g. azureml")
    registry_model: str | None = setting("instead of model.uri: the model's name there, e.g. Phi-3-mini-4k-instruct")
    registry_version: str | None = setting("instead of model.uri: its version, pinned (a number)")
    trust_remote_code: bool = setting("true runs Python code from the model folder (warned about)")
    allow_floating_revision: bool = setting("true accepts a branch or tag as model.revision (a registry's latest)")
    chat_template: str | None = setting("Jinja chat template; null keeps the tokenizer's own")
    max_length: int = setting("tokens per prompt and answer", **at_least(8))
    lora_target_modules: list[str] = setting("module names LoRA adapts")
    modules_to_save: list[str] = setting("modules trained whole and saved in the adapter")
    tiny: TinyArchitecture = setting("shape of the random model (source=tiny)")


@dataclass
class DataConfig:
    """The task's rows, how they become training text, and how they are split."""

    name: str = setting("data set name")
    kind: str = setting("classification: pick a label; generation: write free text", choices=KINDS)
    format: str = setting(
        "how a row becomes text: fields (a text and a label or response column), messages (a chat), "
        "or text_template (prompt_template + completion_template)",
        choices=FORMATS,
    )
    source: str = setting("a local .jsonl/.json/.csv file, a hub data set (owner/name) or an azureml:// URI")
    revision: str | None = setting("hub data sets: the commit to read")
    hub_split: str = setting("hub data sets: the split to read (prepare makes its own train/val/test)")
    allow_floating_revision: bool = setting("true accepts a branch or tag as data.revision")
    text_field: str = setting("the field holding each phrase (classification) or prompt (generation, fields)")
    label_field: str = setting("the field holding each label (classification) or response (generation, fields)")
    labels: list[str] = setting("classification: the labels, in order; generation: []")
    instruction: str | None = setting("a line put before the text in the user turn (required for classification)")
    system: str | None = setting("generation: a system message before every conversation (null: none)")
    messages_field: str = setting("format=messages: the field holding the list of {role, content} turns")
    prompt_template: str | None = setting("format=text_template: the prompt, with {column} placeholders")
    completion_template: str | None = setting("format=text_template: the completion (the loss is on it only)")
    val_fraction: float = setting("share of rows for validation", **fraction(low_open=True, high_open=True))
    test_fraction: float = setting("share of rows for the test split", **fraction(low_open=True, high_open=True))


@dataclass
class TrainConfig:
    """The fine-tuning method (peft) and the trainer's arguments."""

    method: str = setting("method name; the keys below make the difference", choices=("lora", "qlora", "dora"))
    use_dora: bool = setting("DoRA: weight-decomposed low-rank adaptation (peft)")
    load_in_4bit: bool = setting("QLoRA: train against a 4-bit (bitsandbytes) base")
    bnb_4bit_quant_type: str = setting("4-bit data type", choices=("nf4", "fp4"))
    bnb_4bit_use_double_quant: bool = setting("quantize the quantization constants too")
    r: int = setting("the LoRA rank, e.g. 16", **at_least(1))
    lora_alpha: int = setting("the LoRA scaling numerator, e.g. 32", check=lambda v: v > 0, must_be="> 0")
    lora_dropout: float = setting("dropout on the LoRA path", **fraction(high_open=True))
    learning_rate: float = setting("peak learning rate, e.g. 2.0e-4", **positive_finite())
    num_train_epochs: float = setting("passes over the training split", **positive_finite())
    lr_scheduler_type: str = setting("transformers scheduler name")
    warmup_steps: float = setting("warm-up steps; below 1: a fraction of all steps", **at_least(0))
    weight_decay: float = setting("AdamW weight decay", **at_least(0))
    max_grad_norm: float = setting("gradient clipping norm", check=lambda v: v > 0, must_be="> 0")
    logging_steps: int = setting("steps between loss logs", **at_least(1))
    save_steps: int = setting("checkpoint interval; a killed run resumes from the last one", **at_least(1))
    paged_optimizer: bool = setting("paged AdamW on CUDA (QLoRA)")
    eval_strategy: str = setting("when the validation loss is computed", choices=("no", "steps", "epoch"))
    padding_free: bool = setting("flatten each batch into one unpadded row (trl padding_free); same loss")


@dataclass
class BuildConfig:
    """onnxruntime-genai model builder options (int4 weight-only MatMulNBits quantization)."""

    precision: str = setting("builder precision", choices=("int4",))
    block_size: int = setting(
        "weights per quantization block",
        check=lambda v: v in BLOCK_SIZES,
        must_be="a power of two from 16 to 256 (16, 32, 64, 128, 256)",
    )
    accuracy_level: int = setting(
        "MatMul compute precision",
        check=lambda v: 1 <= v <= 4,
        must_be="an integer from 1 to 4 (1 fp32, 2 fp16, 3 bf16, 4 int8)",
    )
    symmetric: bool = setting("true: int4 around zero; false: uint4 with a zero point per block")
    algorithm: str = setting("the builder's algo_config", choices=("default", "rtn", "k_quant"))
    quantize_embeddings: bool = setting("also int4 the token embedding (Gather): smaller, less exact")
    int8_matmuls: list[str] = setting(
        "MatMul groups quantized to int8 instead of int4 (the builder's matmul_mixed_precision)",
        check=lambda v: all(group in INT8_MATMUL_GROUPS for group in v),
        must_be=f"a list of {', '.join(INT8_MATMUL_GROUPS)}",
    )


@dataclass
class EvalConfig:
    """Which artifacts to evaluate and how."""

    artifacts: list[str] = setting("artifacts to evaluate (see slmtune.artifacts)")
    batch_size: int = setting("sequences per forward pass", **at_least(1))
    max_new_tokens: int = setting("greedy generation length: a label's tokens, or a whole answer", **at_least(1))
    latency_examples: int = setting("phrases timed at batch 1", **at_least(1))
    latency_repetitions: int = setting("timing repetitions", **at_least(1))
    max_int4_drop: float = setting(
        "gate: int4 accuracy (generation: exact match) may fall at most this far below merged's", **fraction()
    )
    max_disagreement: float = setting("gate: share of phrases whose generated label int4 may change", **fraction())
    max_int4_ppl_ratio: float = setting(
        "gate (generation): int4's perplexity may be at most this multiple of merged's",
        check=lambda v: v >= 1 and math.isfinite(v),
        must_be="a finite number >= 1",
    )


@dataclass
class ServeConfig:
    """`slmtune serve`: where it listens and the limits every request is held to."""

    host: str = setting("address to bind; 127.0.0.1 serves this machine only")
    port: int = setting("TCP port", check=lambda v: 0 <= v <= 65535, must_be="from 0 to 65535 (0: any free port)")
    max_batch_size: int = setting("phrases scored together in one model call (dynamic batching)", **at_least(1))
    batch_wait_ms: float = setting("how long the first request of a batch waits for others to join", **at_least(0))
    max_body_bytes: int = setting("largest request body accepted (413 above)", **at_least(1024))
    body_timeout_s: float = setting(
        "time a client has to send its whole body (408 after)", check=lambda v: v > 0, must_be="> 0"
    )
    max_phrases: int = setting("phrases in one /v1/classify request", **at_least(1))
    max_tokens: int = setting("cap on a chat completion's max_tokens", **at_least(1))
    graceful_shutdown_s: float = setting("on SIGTERM, how long requests in flight may take to finish", **at_least(0))


@dataclass
class Params:
    """The whole composed configuration (`params.yaml`)."""

    seed: int = setting("seed of every random draw", check=lambda v: 0 <= v < 2**32, must_be="from 0 to 2**32 - 1")
    hw: HwConfig = setting("hardware profile")
    model: ModelConfig = setting("base model")
    data: DataConfig = setting("data set and split")
    train: TrainConfig = setting("fine-tuning method and trainer")
    build: BuildConfig = setting("int4 build")
    eval: EvalConfig = setting("evaluation")
    serve: ServeConfig = setting("the HTTP server (`slmtune serve`)")


GROUPS = ("hw", "model", "data", "train", "build", "eval", "serve")
