"""Runtime adapters on the bench model: what an active adapter costs against a merged int4 model.

The LoRA base is the bench base built to int4 with LoRA inputs (`runtime_adapters.add_lora_inputs`);
its adapters are seeded random LoRA adapters of the training settings' shape (rank, target modules):
what they cost depends on their shapes, not on their values. Measured side by side:
decode tokens/s and batch-1 classification latency with an adapter active vs the merged int4
model; disk and resident memory of one base plus N adapters vs N merged int4 models (each loaded
in a fresh process, the models as N separate folders, as N tasks would be); and the time to load
an adapter and to switch the active adapter between two generators.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from slmtune.bench import inference
from slmtune.bench.timing import seconds, stats
from slmtune.config import Params

COUNTS = (2, 8)  # N adapters vs N merged models


def random_adapter(base: Path, out: Path, params: Params, seed: int) -> Path:
    """A peft LoRA adapter of the training settings' shape on `base`, with seeded random A and B."""
    import torch
    from peft import LoraConfig, get_peft_model

    from slmtune.models import load_causal_lm

    torch.manual_seed(seed)
    targets = list(params.model.lora_target_modules)
    config = LoraConfig(r=params.train.r, lora_alpha=params.train.lora_alpha, target_modules=targets)
    config.init_lora_weights = False  # random B as well as A: an adapter that changes the model
    model = get_peft_model(load_causal_lm(base), config)
    model.save_pretrained(out)
    shutil.copy2(base / "slmtune_task.json", out / "slmtune_task.json")
    return out


def build_lora_base(params: Params, base: Path, root: Path) -> Path:
    """The int4 build of `base` with LoRA inputs, in root/lora_base."""
    from slmtune.runtime_adapters import add_lora_inputs
    from slmtune.stages.build_int4 import build

    build(params, base, root / "int4_base")
    add_lora_inputs(root / "int4_base", base, root / "lora_base")
    shutil.rmtree(root / "int4_base")
    return root / "lora_base"


def export_adapters(params: Params, base: Path, root: Path, count: int) -> list[Path]:
    """`count` adapter files of random adapters (seeds after params.seed)."""
    from slmtune.runtime_adapters import export_adapter

    files = []
    for index in range(count):
        folder = random_adapter(base, root / f"peft_{index}", params, params.seed + index)
        files.append(root / f"adapter_{index}.onnx_adapter")
        export_adapter(folder, base, files[-1])
    return files


def measure(params: Params, workspace, phrases: list[str], prompt_ids: list[int], settings) -> dict[str, Any]:
    """Every adapter figure, the LoRA base and its adapters built in workspace.root/adapters."""
    from slmtune.prompts import Task
    from slmtune.scoring import OnnxGenaiClassifier, load_classifier

    root = workspace.root / "adapters"
    root.mkdir(parents=True, exist_ok=True)
    lora_base = build_lora_base(params, workspace.base, root)
    files = export_adapters(params, workspace.base, root, max(COUNTS))
    merged = workspace.folder("onnx_int4")
    reps = (settings.warmup, settings.repetitions)
    batch = settings.batch * len(params.data.labels)
    classifiers = {
        "adapter": OnnxGenaiClassifier(
            lora_base, Task.load(workspace.base), params.eval.max_new_tokens, batch, adapter=files[0]
        ),
        "merged": load_classifier(merged, batch_size=batch, max_new_tokens=params.eval.max_new_tokens),
    }
    classified = inference.classification(classifiers, phrases, phrases, *reps)
    del classifiers
    runners = {"adapter": genai_generation(lora_base, files[0]), "merged": inference.genai_generation(merged)}
    generated = inference.generation(runners, prompt_ids, settings.new_tokens, *reps)
    del runners
    latency = {name: figures["batch1_ms_per_phrase"] for name, figures in classified.items()}
    decode = {name: figures["decode_tokens_per_s"] for name, figures in generated.items()}
    return {
        "adapter": {"rank": params.train.r, "target_modules": list(params.model.lora_target_modules)},
        "batch1_ms_per_phrase": latency,
        "decode_tokens_per_s": decode,
        "ratios": {
            "decode_adapter_over_merged": round(decode["adapter"]["median"] / decode["merged"]["median"], 3),
            "latency_adapter_over_merged": round(latency["adapter"]["median"] / latency["merged"]["median"], 3),
        },
        "footprint": {str(n): footprint(lora_base, files[:n], merged, root / f"copies_{n}") for n in COUNTS},
        "switch": switch_times(lora_base, files[:2], prompt_ids, settings.repetitions * 10),
    }


def genai_generation(lora_base: Path, adapter_file: Path):
    """inference.genai_generation's runner on the LoRA base, `adapter_file` active on every generator."""
    from slmtune.ortgenai import load_model
    from slmtune.runtime_adapters import ActiveAdapter

    model = load_model(lora_base)
    return inference.genai_generation(lora_base, loaded=model, adapter=ActiveAdapter.load(model, adapter_file))


def footprint(lora_base: Path, files: list[Path], merged: Path, copies: Path) -> dict[str, Any]:
    """Disk and resident memory: the base plus len(files) adapters vs as many merged int4 folders."""
    from slmtune.models import folder_size_bytes

    folders = []
    for index in range(len(files)):
        folders.append(copies / f"merged_{index}")
        shutil.copytree(merged, folders[-1])
    adapters_bytes = sum(f.stat().st_size + f.with_suffix(".json").stat().st_size for f in files)
    base_bytes = folder_size_bytes(lora_base)
    figures = {
        "adapters": {
            "disk_mb": round((base_bytes + adapters_bytes) / 2**20, 1),
            "adapter_file_mb": round(files[0].stat().st_size / 2**20, 2),
            "resident_mb": resident_mb(["--base", str(lora_base), *map(str, files)]),
        },
        "merged": {
            "disk_mb": round(folder_size_bytes(*folders) / 2**20, 1),
            "resident_mb": resident_mb(["--merged", *map(str, folders)]),
        },
    }
    shutil.rmtree(copies)
    for key in ("disk_mb", "resident_mb"):
        figures[f"{key}_adapters_over_merged"] = round(figures["adapters"][key] / figures["merged"][key], 3)
    return figures


def resident_mb(args: list[str]) -> float:
    """MB resident in a fresh process once it has loaded the models and generated a few tokens with each,
    over what it held before loading them."""
    command = [sys.executable, "-m", "slmtune.bench.adapters", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["resident_mb"]


def switch_times(lora_base: Path, files: list[Path], prompt_ids: list[int], switches: int) -> dict[str, Any]:
    """Milliseconds to load an adapter file, and to make the other adapter active on a new generator."""
    from slmtune.ortgenai import load_model, new_generator, onnxruntime_genai

    model = load_model(lora_base)
    adapters = onnxruntime_genai().Adapters(model)
    loads = []
    for index, path in enumerate(files):
        loads.append(seconds(lambda path=path, index=index: adapters.load(str(path), f"a{index}")) * 1000)
    options = {"max_length": len(prompt_ids) + 2, "batch_size": 1}
    switched, first_token = [], []
    for turn in range(switches):
        generator = new_generator(model, **options)
        switched.append(seconds(lambda g=generator, t=turn: g.set_active_adapter(adapters, f"a{t % 2}")) * 1000)
        first_token.append(seconds(lambda g=generator: _first_token(g, prompt_ids)) * 1000)
    return {
        "load_ms": stats(loads, 2),
        "set_active_ms": stats(switched, 3),
        "prompt_and_first_token_ms": stats(first_token, 1),
    }


def _first_token(generator, prompt_ids: list[int]) -> None:
    import numpy as np

    generator.append_tokens(np.asarray(prompt_ids, dtype=np.int32))
    generator.generate_next_token()


def _resident_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: resident memory is measured on Linux")


def _load_and_run(args: argparse.Namespace) -> None:
    """The child of `resident_mb`: load, generate 4 tokens per model or adapter, print the memory they hold."""
    from slmtune.ortgenai import load_model, new_generator, onnxruntime_genai

    onnxruntime_genai()  # the runtime's own libraries are not the models' memory
    before = _resident_mb()

    def run(model, adapter=None) -> None:
        generator = new_generator(model, adapter=adapter, max_length=8, batch_size=1)
        _first_token(generator, [1, 2, 3, 4])
        for _ in range(3):
            generator.generate_next_token()

    if args.base:
        from slmtune.runtime_adapters import ActiveAdapter

        model = load_model(args.base)
        first = ActiveAdapter.load(model, args.files[0], "a0")
        loaded = [first] + [first.load_beside(path, f"a{i}") for i, path in enumerate(args.files[1:], 1)]
        for adapter in loaded:
            run(model, adapter)
    else:
        models = [load_model(path) for path in args.files]
        for model in models:
            run(model)
    print(json.dumps({"resident_mb": round(_resident_mb() - before, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description="load models or adapters, print the memory they hold (resident_mb)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--base", type=Path, help="a LoRA base; FILES are its adapters")
    group.add_argument("--merged", action="store_true", help="FILES are int4 model folders")
    parser.add_argument("files", nargs="+", type=Path)
    _load_and_run(parser.parse_args())


if __name__ == "__main__":
    main()
