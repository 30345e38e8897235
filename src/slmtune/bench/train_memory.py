"""Peak memory and tokens/second of LoRA vs QLoRA training on a Phi-3-mini-shaped random model.

The GPU check of the training methods: no download, random weights of Phi-3-mini's shape
(`model=bench_phi3_mini`), a fixed number of steps at a fixed sequence length, each method
through the project's own loading and peft code (`slmtune.training`). On a CPU machine,
`--model tiny_phi3 --hw cpu` runs the same code in seconds (the smoke test does that).

    python -m slmtune.bench.train_memory --hw cuda --steps 20 --seq-len 256 --out bench/train_memory.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from slmtune.config import Params, compose
from slmtune.environment import go_offline


def write_random_model(params: Params, folder: Path) -> None:
    """Save a randomly initialised Phi3ForCausalLM of `model.tiny`'s shape (safetensors) into `folder`.

    The weights are drawn on the profile's device (a GPU draws Phi-3-mini's 3.8B in seconds, a CPU in minutes).
    """
    import torch

    from slmtune.tiny_model import random_phi3

    arch, hw = params.model.tiny, params.hw
    model = random_phi3(arch, arch.vocab_size, params.seed, hw.device, hw.dtype)
    model.save_pretrained(folder, safe_serialization=True)
    del model
    if hw.device == "cuda":
        torch.cuda.empty_cache()  # the GPU is the measuring processes' alone


def method_params(method: str, hw: str, model: str) -> Params:
    """The composed project configuration for `train=<method>` under `hw=<hw>`: the adapter alone, as for Phi-3-mini."""
    return compose([f"hw={hw}", f"train={method}", f"model={model}", "model.modules_to_save=[]"])


def measure(method: str, hw: str, model: str, base: Path, steps: int, seq_len: int, batch: int) -> dict[str, Any]:
    """Train `steps` optimizer steps on random token ids; return peak memory and tokens/second.

    Run in a process of its own (`measure_in_subprocess`), so the process's peak is this method's.
    """
    import torch
    from peft import get_peft_model

    from slmtune.training import count_parameters, load_for_training, lora_config, peak_memory_mb

    params = method_params(method, hw, model)
    device = params.hw.device
    base_model = load_for_training(params, base)
    if params.hw.gradient_checkpointing and not params.train.load_in_4bit:  # k-bit preparation does it for QLoRA
        base_model.gradient_checkpointing_enable()
        base_model.enable_input_require_grads()
    model = get_peft_model(base_model, lora_config(params))
    model.train()
    trainable, total = count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    start = None
    for step in range(steps + 1):  # step 0 warms up and is not timed
        if step == 1:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        ids = torch.randint(0, vocab, (batch, seq_len), generator=generator).to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - (start or time.perf_counter())
    result = {
        "method": method,
        "peak_memory_mb": peak_memory_mb(device),
        "tokens_per_second": round(steps * batch * seq_len / elapsed, 1) if elapsed > 0 else None,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "final_loss": round(float(loss.detach()), 4),
    }
    return result


def check_profile(hw: str, model: str, methods: list[str]) -> None:
    """Stop with the profile's own clear message, before any model is drawn, when this machine cannot run it."""
    from slmtune.errors import SlmtuneError
    from slmtune.hardware import check_machine

    try:
        for method in methods:
            check_machine(method_params(method, hw, model).hw)
    except SlmtuneError as err:
        raise SystemExit(f"train_memory: {err}") from None


def measure_in_subprocess(
    method: str, hw: str, model: str, base: Path, steps: int, seq_len: int, batch: int
) -> dict[str, Any]:
    """`measure` in a fresh Python process, so that each method's peak memory is its own."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="slmtune-train-memory-") as folder:
        out = Path(folder) / f"{method}.json"
        command = [sys.executable, "-m", "slmtune.bench.train_memory", "--measure", method, "--base", str(base)]
        command += [
            "--hw",
            hw,
            "--model",
            model,
            "--steps",
            str(steps),
            "--seq-len",
            str(seq_len),
            "--batch",
            str(batch),
        ]
        completed = subprocess.run([*command, "--out", str(out)], check=False)
        if completed.returncode != 0:
            raise SystemExit(f"train_memory: measuring train={method} failed (exit {completed.returncode}); see above")
        return json.loads(out.read_text())


def run(model: str, hw: str, methods: list[str], steps: int, seq_len: int, batch: int) -> dict[str, Any]:
    """Measure each method on the same random model; add QLoRA's peak memory relative to LoRA's."""
    params = method_params(methods[0], hw, model)
    results: dict[str, Any] = {"model": model, "hw": hw, "steps": steps, "seq_len": seq_len, "batch": batch}
    with tempfile.TemporaryDirectory(prefix="slmtune-random-model-") as folder:
        write_random_model(params, Path(folder))
        for method in methods:
            results[method] = measure_in_subprocess(method, hw, model, Path(folder), steps, seq_len, batch)
    if "lora" in results and "qlora" in results:
        results["qlora_over_lora_peak_memory"] = round(
            results["qlora"]["peak_memory_mb"] / results["lora"]["peak_memory_mb"], 3
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parse = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parse.add_argument("--model", default="bench_phi3_mini", help="a conf/model entry of source tiny (random weights)")
    parse.add_argument("--hw", default="cuda", help="hardware profile (cpu or cuda)")
    parse.add_argument("--methods", nargs="+", default=["lora", "qlora"])
    parse.add_argument("--steps", type=int, default=20)
    parse.add_argument("--seq-len", type=int, default=256)
    parse.add_argument("--batch", type=int, default=1)
    parse.add_argument("--out", type=Path, default=Path("bench/train_memory.json"))
    parse.add_argument("--measure", metavar="METHOD", help=argparse.SUPPRESS)  # one method, in this process
    parse.add_argument("--base", type=Path, help=argparse.SUPPRESS)  # the random model `--measure` trains
    args = parse.parse_args(argv)
    go_offline()
    if args.measure:
        results = measure(args.measure, args.hw, args.model, args.base, args.steps, args.seq_len, args.batch)
    else:
        check_profile(args.hw, args.model, args.methods)
        results = run(args.model, args.hw, args.methods, args.steps, args.seq_len, args.batch)
    from slmtune.atomic import atomic_write_json

    atomic_write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
