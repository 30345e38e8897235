"""The benchmarked artifacts, built by the pipeline's own stage functions in a work folder.

`prepare` materialises the random model (the `bench_phi3` profile), `merge` merges the adapter
that the padded training run wrote, and `build_int4` builds the int4 model (the `build` group's
settings) and an fp32 reference with the same builder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from slmtune.config import Params

ARTIFACTS = ("pytorch_fp32", "onnx_fp32", "onnx_int4")
TITLES = {"pytorch_fp32": "PyTorch fp32 (merged)", "onnx_fp32": "ONNX fp32", "onnx_int4": "ONNX int4"}


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Where the benchmark's inputs and artifacts live while it runs."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    def folder(self, artifact: str) -> Path:
        """The model folder of a benchmarked artifact."""
        return self.merged if artifact == "pytorch_fp32" else self.root / artifact


def prepare_base(workspace: Workspace, params: Params) -> None:
    """The `prepare` stage into the work folder: splits, prompts, the random model and its tokenizer.

    The byte-level BPE learns only the tokens the data holds (about 3,900), so the model's
    vocabulary is then grown to `model.tiny.vocab_size` (Phi-3's 32,064): rows the tokenizer never
    produces, but which cost what they cost in a real model (embedding size, output-head compute).
    """
    from slmtune.stages.prepare import prepare

    prepare(params, workspace.data, workspace.base)
    pad_vocabulary(workspace.base, params.model.tiny.vocab_size, params.seed)


def pad_vocabulary(folder: Path, size: int, seed: int) -> None:
    """Grow the model's embedding and output head to `size` rows (random, seeded) if it has fewer."""
    import torch

    from slmtune.models import load_causal_lm

    model = load_causal_lm(folder)
    if model.config.vocab_size >= size:
        return
    torch.manual_seed(seed)
    model.resize_token_embeddings(size, mean_resizing=False)
    model.save_pretrained(folder, safe_serialization=True)


def merge(workspace: Workspace, adapter: Path, params: Params) -> None:
    """Merge `adapter` into the base: the `merge` stage (the adapter gets the base's task card, as in train_lora)."""
    from slmtune.prompts import Task
    from slmtune.stages.merge import merge as merge_stage

    Task.load(workspace.base).save(adapter)
    merge_stage(params, workspace.base, adapter, workspace.merged)


def build(workspace: Workspace, params: Params, precision: str) -> Path:
    """Build `merged` with the `build_int4` stage (`int4`: the build group's settings; `fp32`: the reference)."""
    from slmtune.stages.build_int4 import build as build_stage

    out = workspace.folder(f"onnx_{precision}")
    build_stage(
        dataclasses.replace(params, build=dataclasses.replace(params.build, precision=precision)), workspace.merged, out
    )
    return out


def sizes(workspace: Workspace) -> dict[str, Any]:
    """Bytes on disk of each artifact's folder, and of the fp32 safetensors the targets compare with."""
    from slmtune.models import folder_size_bytes

    safetensors = sum(p.stat().st_size for p in workspace.merged.glob("*.safetensors"))
    folders = {name: folder_size_bytes(workspace.folder(name)) for name in ARTIFACTS}
    return {
        "fp32_safetensors_bytes": safetensors,
        **{name: {"bytes": size, "mb": round(size / 2**20, 2)} for name, size in folders.items()},
    }


def describe(folder: Path) -> dict[str, Any]:
    """The benchmarked model's shape, from its config.json and weights."""
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    parameters = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                parameters += math.prod(weights.get_slice(key).get_shape())
    return {
        "parameters": parameters,
        "hidden_size": config["hidden_size"],
        "intermediate_size": config["intermediate_size"],
        "num_hidden_layers": config["num_hidden_layers"],
        "num_attention_heads": config["num_attention_heads"],
        "vocab_size": config["vocab_size"],
    }
