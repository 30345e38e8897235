"""The benchmark from start to end: build the artifacts, measure them side by side, report."""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from slmtune.bench import adapters, inference, report, training
from slmtune.bench.models import ARTIFACTS, Workspace, build, describe, merge, prepare_base, sizes
from slmtune.bench.timing import Progress
from slmtune.errors import ConfigError

STEPS = 10  # progress lines
GENERATIVE_TASK = "home_commands"  # the data config whose varied lengths show what padding-free training gains


@dataclasses.dataclass
class Settings:
    """How much to measure. The defaults fit `make bench` into 15 minutes on 2 CPU cores."""

    model: str = "bench_phi3"  # the conf/model profile benchmarked
    repetitions: int = 3
    warmup: int = 1
    latency_phrases: int = 8  # phrases classified one at a time per repetition
    batch: int = 16  # phrases classified at once
    new_tokens: int = 64  # tokens generated per decode run
    train_steps: int = 6  # optimizer steps per training run, 4 runs (the first step of each is a warm-up)
    overrides: list[str] = dataclasses.field(default_factory=list)  # more Hydra overrides, e.g. build.block_size=64

    def check(self) -> None:
        for name in ("repetitions", "latency_phrases", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"bench setting '{name}' is {getattr(self, name)}; it must be at least 1")
        if self.warmup < 0:
            raise ConfigError(f"bench setting 'warmup' is {self.warmup}; it must be 0 or more")
        if self.new_tokens < 2 or self.train_steps < 2:
            raise ConfigError("bench settings 'new_tokens' and 'train_steps' must be at least 2 (one is the warm-up)")


QUICK = {"model": "tiny_phi3", "repetitions": 1, "latency_phrases": 2, "batch": 4, "new_tokens": 8, "train_steps": 2}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor()
    )
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name.replace("-", "_"): version(name) for name in PACKAGES},
    }


PACKAGES = ("torch", "transformers", "peft", "trl", "onnxruntime", "onnxruntime-genai")


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []


def run(settings: Settings, workdir: Path) -> dict[str, Any]:
    """Build every artifact in `workdir`, measure them, and return the results (targets included)."""
    from slmtune.config import compose
    from slmtune.data import read_jsonl
    from slmtune.environment import set_up_process

    settings.check()
    started = time.perf_counter()
    progress = Progress(STEPS)
    workspace = Workspace(workdir)
    params = compose([f"model={settings.model}", *settings.overrides])
    set_up_process(params.hw.cpu_isa, params.hw.num_threads)

    with progress.step(f"prepare: splits and the random model/tokenizer of model={settings.model}"):
        prepare_base(workspace, params)
    with progress.step(
        f"train_lora: {len(training.ORDER)} runs of {settings.train_steps} steps, padded or padding-free"
    ):
        adapter = workspace.root / "adapter"
        trained = training.compare(
            params, workspace.base, workspace.data, workspace.root / "train", settings.train_steps, adapter
        )
    with progress.step(f"train_lora on data={GENERATIVE_TASK}: padded or padding-free, rows of varied length"):
        generative = generative_training(settings, workspace)
    with progress.step("merge: the padded run's adapter into the base"):
        merge(workspace, adapter, params)
    with progress.step("build: int4 ONNX (the build group's settings)"):
        build(workspace, params, "int4")
    with progress.step("build: fp32 ONNX (the reference)"):
        build(workspace, params, "fp32")

    phrases = [row["phrase"] for row in read_jsonl(workspace.data / "test.jsonl")]
    single, many = phrases[: settings.latency_phrases], phrases[: settings.batch]
    classifier_batch = settings.batch * len(params.data.labels)
    folders = {name: workspace.folder(name) for name in ARTIFACTS}
    classifiers = inference.load_classifiers(folders, classifier_batch, params.eval.max_new_tokens)
    reps = (settings.warmup, settings.repetitions)
    with progress.step(f"classify: {len(single)} phrases at batch 1, {len(many)} at once, per artifact"):
        classified = inference.classification(classifiers, single, many, *reps)
    with progress.step(f"eval throughput: label scoring vs greedy generation of {len(many)} phrases"):
        evaluated = inference.eval_throughput(classifiers, many, *reps)
    prompt_lengths = _prompt_lengths(workspace.merged, params.data.instruction, single)
    del classifiers
    gc.collect()
    with progress.step(f"generate: {settings.new_tokens} tokens at batch 1, per artifact"):
        runners = {
            name: inference.torch_generation(folder) if name == "pytorch_fp32" else inference.genai_generation(folder)
            for name, folder in folders.items()
        }
        prompt_ids = _prompt_ids(workspace.merged, params.data.instruction, single[0])
        generated = inference.generation(runners, prompt_ids, settings.new_tokens, *reps)
        del runners
        gc.collect()
    with progress.step(f"adapters: LoRA base + {max(adapters.COUNTS)} runtime adapters vs merged int4 models"):
        runtime_adapters = adapters.measure(params, workspace, single, prompt_ids, settings)

    results: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_time_s": 0.0,
        "machine": machine(),
        "settings": {
            **dataclasses.asdict(settings),
            "classifier_batch_size": classifier_batch,
            "eval_new_tokens": params.eval.max_new_tokens,
            "seed": params.seed,
            "build": dataclasses.asdict(params.build),
            "train_model": (
                f"the benchmarked model, LoRA r={params.train.r} on {', '.join(params.model.lora_target_modules)}"
            ),
        },
        "model": describe(workspace.base),
        "prompt_tokens": round(sum(prompt_lengths) / len(prompt_lengths), 1),
        "classification": classified,
        "generation": generated,
        "size": sizes(workspace),
        "training": trained,
        "training_generative": generative,
        "eval_throughput": evaluated,
        "adapters": runtime_adapters,
    }
    results["targets"] = report.targets(results)
    results["wall_time_s"] = round(time.perf_counter() - started, 1)
    return results


def generative_training(settings: Settings, workspace: Workspace) -> dict[str, Any]:
    """The padded vs padding-free comparison on the generative task's rows, with the benchmarked model."""
    from slmtune.config import compose

    params = compose([f"model={settings.model}", f"data={GENERATIVE_TASK}", *settings.overrides])
    generative = Workspace(workspace.root / GENERATIVE_TASK)
    prepare_base(generative, params)
    work = generative.root / "train"
    return training.compare(params, generative.base, generative.data, work, settings.train_steps, work / "adapter")


def _prompt_ids(folder: Path, instruction: str, phrase: str) -> list[int]:
    """Token ids of a phrase rendered with the chat template (the same ids feed every backend)."""
    from slmtune.models import load_tokenizer
    from slmtune.prompts import render_prompt

    tokenizer = load_tokenizer(folder)
    return tokenizer(render_prompt(tokenizer, instruction, phrase), add_special_tokens=False)["input_ids"]


def _prompt_lengths(folder: Path, instruction: str, phrases: list[str]) -> list[int]:
    return [len(_prompt_ids(folder, instruction, phrase)) for phrase in phrases]
