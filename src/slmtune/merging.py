"""Merge a LoRA adapter into its base model.

A plain LoRA adapter (peft's LoRA on linear weights, optionally rsLoRA or whole modules saved) is
merged tensor by tensor, from the safetensors files, with peft's own formula (W + (B @ A) * scaling,
computed by the same torch ops): the weights come out the same, bit for bit, as peft's
`merge_and_unload` gives, without importing transformers or peft (on the tiny default that import
was 90% of the stage's time). Any other adapter (DoRA, per-module ranks, LoRA on
embeddings, Conv1D's fan-in-fan-out, ...) is merged by peft on the loaded model, and the merged model's
logits are checked against base+adapter.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmtune.errors import ModelError, VerificationError

CHECK_TOLERANCE = 1e-3
ADAPTER_PREFIX = "base_model.model."  # peft's prefix for a causal LM's tensors in adapter_model.safetensors
LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")
SHARD_INDEX = "model.safetensors.index.json"
# adapter_config.json keys that change what merging computes beyond r, lora_alpha and use_rslora: an adapter
# that sets any of them is merged by peft.
PEFT_ONLY_OPTIONS = (
    "use_dora",
    "fan_in_fan_out",
    "rank_pattern",
    "alpha_pattern",
    "lora_bias",
    "target_parameters",
    "trainable_token_indices",
    "layer_replication",
    "use_qalora",
    "use_bdlora",
    "alora_invocation_tokens",
)
RETRAIN_HINT = (
    "it was trained for another base: retrain it on this base (`dvc repro train_lora`) or use the base it was "
    "trained on"
)


@dataclass(frozen=True)
class MergeReport:
    """How the merge went, for the stage's log line."""

    method: str  # "tensors" (peft's formula on the weight files) or "peft" (merge_and_unload on the model)
    lora_weights: int | None = None  # weights that received a LoRA update (tensor by tensor)
    whole_tensors: int | None = None  # tensors replaced whole: modules_to_save (tensor by tensor)
    logit_difference: float | None = None  # max |logit difference| vs base+adapter (peft)

    def summary(self) -> str:
        if self.method == "tensors":
            return (
                f"merged tensor by tensor with peft's formula: {self.lora_weights} LoRA weights updated, "
                f"{self.whole_tensors} saved modules' tensors replaced"
            )
        return f"merged with peft; max |logit difference| vs base+adapter = {self.logit_difference:.2e}"


def merge_adapter(
    base_dir: Path,
    adapter_dir: Path,
    out_dir: Path,
    instruction: str,
    check_phrases: list[str],
    trust_remote_code: bool = False,
) -> MergeReport:
    """Merge `adapter_dir` into `base_dir` in float32 into `out_dir` (weights, config, tokenizer)."""
    from slmtune.models import read_adapter_config

    config = read_adapter_config(adapter_dir)
    if merges_tensor_by_tensor(config):
        return merge_tensors(base_dir, adapter_dir, out_dir, config)
    return merge_with_peft(base_dir, adapter_dir, out_dir, instruction, check_phrases, trust_remote_code)


def merges_tensor_by_tensor(adapter_config: dict[str, Any]) -> bool:
    """Whether peft's plain LoRA formula is all the merge needs (else peft merges the loaded model)."""
    return adapter_config.get("peft_type") == "LORA" and not any(
        adapter_config.get(option) for option in PEFT_ONLY_OPTIONS
    )


# ---------------------------------------------------------------------------- tensor by tensor


def merge_tensors(
    base_dir: Path, adapter_dir: Path, out_dir: Path, config: dict[str, Any] | None = None
) -> MergeReport:
    """Merge a plain LoRA adapter file by file: every base weight file (shard) in float32, the other base
    files copied (config, tokenizer). `config` is the adapter's adapter_config.json, if already read."""
    from safetensors.torch import load_file

    from slmtune.models import check_tokenizer_folder, read_adapter_config

    check_tokenizer_folder(base_dir)
    config = config if config is not None else read_adapter_config(adapter_dir)
    adapter = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    updates, whole = _split_adapter(adapter, adapter_dir)
    scaling = _scaling(config)
    shards = _weight_files(base_dir)
    found: set[str] = set()
    total_bytes = 0
    for shard in shards:
        tensors = load_file(str(base_dir / shard))
        for name in list(tensors):
            if name in updates:
                lora_a, lora_b = updates[name]
                delta = _lora_delta(lora_a, lora_b, scaling, name)
                _check_shape(name, tensors[name], delta, adapter_dir, base_dir)
                tensors[name] = _float32(tensors[name])
                tensors[name] += delta  # in place, as peft adds the delta to the base layer's weight
            elif name in whole:
                _check_shape(name, tensors[name], whole[name], adapter_dir, base_dir)
                tensors[name] = _float32(whole[name])
            else:
                tensors[name] = _float32(tensors[name])
            total_bytes += tensors[name].numel() * tensors[name].element_size()
        found.update(name for name in tensors if name in updates or name in whole)
        _save_weights(tensors, out_dir / shard)
    missing = sorted((set(updates) | set(whole)) - found)
    if missing:
        raise ModelError(
            f"the adapter {adapter_dir} does not fit the base model {base_dir} (no base weight {missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}); {RETRAIN_HINT}"
        )
    _copy_model_files(base_dir, out_dir, total_bytes)
    return MergeReport("tensors", lora_weights=len(updates), whole_tensors=len(whole))


def _split_adapter(adapter: dict, adapter_dir: Path) -> tuple[dict[str, tuple[Any, Any]], dict[str, Any]]:
    """The adapter's tensors as {base weight: (lora_A, lora_B)} and {base tensor: whole replacement}."""
    pairs: dict[str, dict[str, Any]] = {}
    whole: dict[str, Any] = {}
    for key, tensor in adapter.items():
        if not key.startswith(ADAPTER_PREFIX):
            raise ModelError(f"{adapter_dir}: tensor {key!r} is not a causal LM adapter's; rerun train_lora")
        name = key[len(ADAPTER_PREFIX) :]
        for suffix in LORA_SUFFIXES:
            if name.endswith(suffix):
                pairs.setdefault(name[: -len(suffix)] + ".weight", {})[suffix] = tensor
                break
        else:
            whole[name] = tensor
    incomplete = sorted(weight for weight, pair in pairs.items() if len(pair) != 2)
    if incomplete:
        raise ModelError(f"{adapter_dir}: {incomplete[0]} has lora_A or lora_B but not both; rerun train_lora")
    return {weight: (pair[LORA_SUFFIXES[0]], pair[LORA_SUFFIXES[1]]) for weight, pair in pairs.items()}, whole


def _scaling(config: dict[str, Any]) -> float:
    """peft's LoRA scaling: alpha / r, or alpha / sqrt(r) for rsLoRA."""
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def _float32(tensor):
    """Floating tensors in float32 (the merge never writes low precision), others as they are."""
    import torch

    return tensor.to(torch.float32) if tensor.is_floating_point() else tensor


def _lora_delta(lora_a, lora_b, scaling: float, name: str):
    """(B @ A) * scaling in float32: peft's LoRA Linear delta, with the same ops (so the same bits)."""
    lora_a, lora_b = _float32(lora_a), _float32(lora_b)
    if lora_a.dim() != 2 or lora_b.dim() != 2 or lora_b.shape[1] != lora_a.shape[0]:
        raise ModelError(f"{name}: lora_B {list(lora_b.shape)} and lora_A {list(lora_a.shape)} do not multiply")
    return (lora_b @ lora_a) * scaling


def _check_shape(name: str, base, adapted, adapter_dir: Path, base_dir: Path) -> None:
    if tuple(base.shape) != tuple(adapted.shape):
        raise ModelError(
            f"the adapter {adapter_dir} does not fit the base model {base_dir} (size mismatch for {name}: the "
            f"adapter gives {list(adapted.shape)}, the base has {list(base.shape)}); {RETRAIN_HINT}"
        )


def _weight_files(base_dir: Path) -> list[str]:
    """The base's safetensors files: the shards its index names, or its single file."""
    index = base_dir / SHARD_INDEX
    if index.is_file():
        return sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    return sorted(path.name for path in base_dir.glob("*.safetensors"))


def _save_weights(tensors: dict, path: Path) -> None:
    """Save as transformers does (safetensors with format=pt)."""
    from safetensors.torch import save_file

    if not tensors:
        raise VerificationError(f"{path.name}: no tensors to write")
    save_file(tensors, str(path), metadata={"format": "pt"})


def _copy_model_files(base_dir: Path, out_dir: Path, total_bytes: int) -> None:
    """Every base file but its weights and task card (config, tokenizer, chat template, ...), the config and
    shard index saying float32."""
    from slmtune.models import PICKLE_SUFFIXES
    from slmtune.prompts import TASK_FILE

    for item in sorted(base_dir.iterdir()):
        skip = item.suffix == ".safetensors" or item.suffix in PICKLE_SUFFIXES or item.name == TASK_FILE
        if item.is_file() and not item.name.startswith(".") and not skip:
            shutil.copy2(item, out_dir / item.name)
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    dtype_keys = [key for key in ("dtype", "torch_dtype") if key in config]
    if any(config[key] != "float32" for key in dtype_keys):
        config.update({key: "float32" for key in dtype_keys})
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    index_path = out_dir / SHARD_INDEX
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        index.setdefault("metadata", {})["total_size"] = total_bytes
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------- with peft, on the loaded model


def _logits(model, tokenizer, prompts: list[str]):
    import torch

    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits.float()


def merge_with_peft(
    base_dir: Path,
    adapter_dir: Path,
    out_dir: Path,
    instruction: str,
    check_phrases: list[str],
    trust_remote_code: bool = False,
) -> MergeReport:
    """Merge in full precision with peft's merge_and_unload, save safetensors and tokenizer.

    The check compares logits on `check_phrases` rendered with the chat template and `instruction`.
    """
    from slmtune.models import load_adapter, load_causal_lm, load_tokenizer
    from slmtune.prompts import render_prompt

    tokenizer = load_tokenizer(base_dir, trust_remote_code)
    check_prompts = [render_prompt(tokenizer, instruction, phrase) for phrase in check_phrases]
    base = load_causal_lm(base_dir, None, trust_remote_code)  # float32: never merge into low precision
    adapted = load_adapter(base, adapter_dir, base_dir)
    expected = _logits(adapted, tokenizer, check_prompts)
    merged = adapted.merge_and_unload().eval()
    actual = _logits(merged, tokenizer, check_prompts)
    difference = float((expected - actual).abs().max())
    scale = float(expected.abs().max()) or 1.0
    if difference > CHECK_TOLERANCE * max(1.0, scale):
        raise VerificationError(
            f"merged model's logits differ from base+adapter by {difference:.3g} "
            f"(tolerance {CHECK_TOLERANCE * max(1.0, scale):.3g}); the merge is wrong"
        )
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return MergeReport("peft", logit_difference=difference)
