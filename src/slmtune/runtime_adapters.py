"""Runtime LoRA adapters for ONNX Runtime GenAI: one int4 base, many tasks, switched per request.

`add_lora_inputs` turns an int4 build of a base model into a *LoRA base*: beside every adapted
MatMul (qkv, o, gate, up, down of each layer) it adds `x @ A @ B` whose `A` and `B` are graph
inputs with a rank that is a free dimension, defaulting to rank-0 tensors, so the folder with no
adapter active computes exactly what the plain int4 base computes. `export_adapter` writes a peft
LoRA adapter as an ONNX Runtime adapter file (`.onnx_adapter`, loaded by `og.Adapters`) with a
card naming the base it fits: a hash of the base's weights and each input's shape. `check_adapter`
refuses, before the runtime sees it, an adapter made for another base or another shape, and
`export_adapter` refuses what the runtime cannot apply (DoRA, `modules_to_save`, other peft types).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slmtune.errors import ModelError

BASE_CARD = "slmtune_lora_base.json"
# peft module name (Phi-3) -> the builder's MatMul names in a layer, and how LoRA B's rows split among them
LAYOUT = {
    "qkv_proj": ("attn/qkv_proj",),
    "o_proj": ("attn/o_proj",),
    "gate_up_proj": ("mlp/gate_proj", "mlp/up_proj"),  # the builder splits Phi-3's fused gate_up into two MatMuls
    "down_proj": ("mlp/down_proj",),
}
PEFT_PARENT = {"qkv_proj": "self_attn", "o_proj": "self_attn", "gate_up_proj": "mlp", "down_proj": "mlp"}


@dataclass(frozen=True)
class AdapterCard:
    """What an adapter file fits: the base's weights hash, each input's (in, out) shape; and what it is."""

    base_sha256: str
    shapes: dict[str, list[int]]  # input name -> [in_features, out_features]
    rank: int
    lora_alpha: float
    target_modules: list[str]
    task: dict

    def save(self, path: Path) -> None:
        from slmtune.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> AdapterCard:
        if not path.is_file():
            raise ModelError(f"{path}: no adapter card; export the adapter with slmtune (runtime_adapters)")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def card_path(adapter_file: Path) -> Path:
    return adapter_file.with_suffix(".json")


def weights_sha256(folder: Path) -> str:
    """A hash of a PyTorch model folder's weights (its safetensors files, in name order)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder}: no *.safetensors weights to identify the base by")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _input_name(layer: int, node: str, matrix: str) -> str:
    return f"model.layers.{layer}.{node.replace('/', '.')}.lora_{matrix}.weight"


def _matmul_node(graph, layer: int, node: str):
    prefix = f"/model/layers.{layer}/{node}/MatMul"
    found = [n for n in graph if n.name.startswith(prefix) and n.op_type in ("MatMul", "MatMulNBits")]
    if len(found) != 1:
        raise ModelError(f"the int4 graph has {len(found)} MatMul nodes named {prefix}*; expected one (a Phi-3 build)")
    return found[0]


def _matmul_shape(node) -> tuple[int, int]:
    """(in_features, out_features) of a MatMulNBits (its K and N) or of a plain MatMul (its weight's shape)."""
    if node.op_type == "MatMulNBits":
        return int(node.attributes["K"].value), int(node.attributes["N"].value)
    weight = node.inputs[1].const_value
    return int(weight.shape[0]), int(weight.shape[1])


def add_lora_inputs(int4_folder: Path, base_folder: Path, out: Path) -> dict[str, list[int]]:
    """Write `out`: the int4 build of `base_folder` with LoRA inputs beside every adapted MatMul (atomically)."""
    import shutil

    import onnx_ir as ir

    from slmtune.atomic import atomic_outputs

    model = ir.load(int4_folder / "model.onnx")
    graph = model.graph
    layers = json.loads((base_folder / "config.json").read_text())["num_hidden_layers"]
    shapes: dict[str, list[int]] = {}
    for layer in range(layers):
        for nodes in LAYOUT.values():
            for node_name in nodes:
                node = _matmul_node(graph, layer, node_name)
                k, n = _matmul_shape(node)
                _graft(ir, graph, node, _input_name(layer, node_name, "A"), _input_name(layer, node_name, "B"), k, n)
                shapes[_input_name(layer, node_name, "A")] = [k, n]
    card = {"base_sha256": weights_sha256(base_folder), "shapes": shapes}
    with atomic_outputs(out) as (tmp,):
        for item in int4_folder.iterdir():
            if item.name not in ("model.onnx", "model.onnx.data"):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        ir.save(model, tmp / "model.onnx", external_data="model.onnx.data")
        (tmp / BASE_CARD).write_text(json.dumps(card, indent=2) + "\n")
    return shapes


def _graft(ir, graph, node, a_name: str, b_name: str, k: int, n: int) -> None:
    """y = node(x) becomes y + (x @ A) @ B, A and B inputs whose rank defaults to 0 (adds nothing)."""
    x, y = node.inputs[0], node.outputs[0]
    consumers = list(y.uses())
    a = ir.Value(name=a_name, shape=ir.Shape([k, "lora_rank"]), type=ir.TensorType(ir.DataType.FLOAT))
    b = ir.Value(name=b_name, shape=ir.Shape(["lora_rank", n]), type=ir.TensorType(ir.DataType.FLOAT))
    a.const_value = ir.tensor(np.zeros((k, 0), np.float32), name=a_name)
    b.const_value = ir.tensor(np.zeros((0, n), np.float32), name=b_name)
    for value in (a, b):
        graph.inputs.append(value)
        graph.register_initializer(value)
    low = ir.node("MatMul", [x, a], name=f"{node.name}/lora_A")
    delta = ir.node("MatMul", [low.outputs[0], b], name=f"{node.name}/lora_B")
    total = ir.node("Add", [y, delta.outputs[0]], name=f"{node.name}/lora_Add")
    for use in consumers:
        use.node.replace_input_with(use.idx, total.outputs[0])
    graph.insert_after(node, [low, delta, total])


def check_exportable(config: dict, weights: dict, folder: Path) -> None:
    """Refuse, with the reason, an adapter the runtime cannot apply as LoRA inputs."""
    if config.get("peft_type") != "LORA":
        raise ModelError(f"{folder}: a {config.get('peft_type')} adapter; runtime adapters carry LoRA weights only")
    if config.get("use_dora"):
        raise ModelError(
            f"{folder}: a DoRA adapter; its magnitude vectors rescale whole weight columns, which a LoRA input "
            "cannot express: merge it (models/merged, models/int4) instead"
        )
    saved = sorted({key.split(".modules_to_save")[0].rsplit(".", 1)[-1] for key in weights if "modules_to_save" in key})
    if config.get("modules_to_save") or saved:
        raise ModelError(
            f"{folder}: the adapter trains whole modules ({config.get('modules_to_save') or saved}, "
            "model.modules_to_save); a runtime adapter carries LoRA weights only: train with "
            "model.modules_to_save=[] or use the merged model"
        )
    unknown = sorted(set(config.get("target_modules") or []) - set(LAYOUT))
    if unknown:
        raise ModelError(f"{folder}: LoRA on {unknown}; a runtime adapter can adapt {sorted(LAYOUT)} only")


def export_adapter(adapter_folder: Path, base_folder: Path, out: Path) -> AdapterCard:
    """Write `out` (.onnx_adapter) and its card from a peft LoRA adapter trained on `base_folder`."""
    import onnxruntime as ort
    from safetensors.numpy import load_file

    from slmtune.prompts import Task

    config = json.loads((adapter_folder / "adapter_config.json").read_text(encoding="utf-8"))
    weights = load_file(adapter_folder / "adapter_model.safetensors")
    check_exportable(config, weights, adapter_folder)
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / np.sqrt(rank) if config.get("use_rslora") else alpha / rank
    layers = json.loads((base_folder / "config.json").read_text())["num_hidden_layers"]
    parameters: dict[str, np.ndarray] = {}
    shapes: dict[str, list[int]] = {}
    for layer in range(layers):
        for module in config["target_modules"]:
            stem = f"base_model.model.model.layers.{layer}.{PEFT_PARENT[module]}.{module}"
            low, up = weights[f"{stem}.lora_A.weight"], weights[f"{stem}.lora_B.weight"] * scale
            rows = np.split(up, len(LAYOUT[module]), axis=0)  # gate_up's B: gate rows, then up rows
            for node_name, part in zip(LAYOUT[module], rows, strict=True):
                a_name, b_name = _input_name(layer, node_name, "A"), _input_name(layer, node_name, "B")
                parameters[a_name] = np.ascontiguousarray(low.T, dtype=np.float32)
                parameters[b_name] = np.ascontiguousarray(part.T, dtype=np.float32)
                shapes[a_name] = [int(low.shape[1]), int(part.shape[0])]
    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(value) for name, value in parameters.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    adapter.export_adapter(str(tmp))
    os.replace(tmp, out)  # whole or not at all
    card = AdapterCard(
        weights_sha256(base_folder),
        shapes,
        rank,
        alpha,
        sorted(config["target_modules"]),
        asdict(Task.load(adapter_folder)),
    )
    card.save(card_path(out))
    return card


def check_adapter(lora_base: Path, adapter_file: Path) -> AdapterCard:
    """The adapter's card, after checking it fits `lora_base`; a ModelError naming what differs otherwise."""
    base_card_file = lora_base / BASE_CARD
    if not base_card_file.is_file():
        raise ModelError(f"{lora_base}: not a LoRA base (no {BASE_CARD}); build it with add_lora_inputs")
    base = json.loads(base_card_file.read_text(encoding="utf-8"))
    card = AdapterCard.load(card_path(adapter_file))
    if card.base_sha256 != base["base_sha256"]:
        raise ModelError(
            f"{adapter_file}: made for another base model (weights {card.base_sha256[:12]}, this base "
            f"{base['base_sha256'][:12]}); export it against the base it was trained on"
        )
    for name, shape in card.shapes.items():
        expected = base["shapes"].get(name)
        if expected != shape:
            layer = name.split(".")[2]
            raise ModelError(
                f"{adapter_file}: {name} (layer {layer}) is {shape[0]}x{shape[1]} (in x out) in the adapter but "
                f"{'absent' if expected is None else 'x'.join(map(str, expected))} in {lora_base}; "
                "the adapter's layout does not fit this base"
            )
    return card


def adapter_task(lora_base: Path, adapter_file: Path, kind: str | None = None):
    """The task card an adapter file carries, after checking it fits `lora_base` (and is a `kind` task)."""
    from slmtune.prompts import Task

    if not adapter_file.is_file():
        raise ModelError(f"--adapter {adapter_file}: no such adapter file (export one with slmtune's runtime_adapters)")
    task = Task(**check_adapter(lora_base, adapter_file).task)
    if kind is not None and task.kind != kind:
        raise ModelError(f"{adapter_file}: this adapter was fine-tuned for {task.kind}, not {kind}")
    return task


class ActiveAdapter:
    """One runtime adapter loaded in an `og.Adapters` of a model, made active on every generator given to `apply`.

    Several share one `og.Adapters` (one model in memory): `ActiveAdapter.load(model, file)` makes the
    first, `other.load_beside(file)` the next.
    """

    def __init__(self, adapters, name: str):
        self.adapters, self.name = adapters, name

    @classmethod
    def load(cls, model, adapter_file: Path, name: str | None = None) -> ActiveAdapter:
        from slmtune.ortgenai import onnxruntime_genai

        adapter = cls(onnxruntime_genai().Adapters(model), name or adapter_file.stem)
        adapter.adapters.load(str(adapter_file), adapter.name)
        return adapter

    def load_beside(self, adapter_file: Path, name: str) -> ActiveAdapter:
        self.adapters.load(str(adapter_file), name)
        return ActiveAdapter(self.adapters, name)

    def apply(self, generator) -> None:
        generator.set_active_adapter(self.adapters, self.name)
