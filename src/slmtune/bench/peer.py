"""slmtune against its peer, Olive, on the same fine-tuning work: whole processes, in alternating pairs.

Both fine-tune the base that `prepare` builds for `model=` on the same training split with the same
LoRA settings, taken from the composed params (r, alpha, dropout, the target modules, learning rate,
schedule, warm-up, batch, epochs, seed; fp32, no gradient checkpointing, no `modules_to_save`, which
Olive's LoRA pass refuses). slmtune runs its `train_lora`, `merge` and `build_int4` stages as the
processes dvc.yaml starts (DVC's own bookkeeping, about 0.4 s a stage, left out); Olive 0.13 runs
`olive run` over LoRA -> MergeAdapterWeights -> ModelBuilder(int4), in its own virtual environment
(`make bench-peer` builds `.venv-peer` from bench/peer-requirements.txt). Each keeps its own
defaults otherwise: slmtune evaluates on the validation split every epoch and checkpoints every
`train.save_steps`, Olive pads every row to `max_seq_len` and trains on the whole text. Both int4
folders are scored by the same classifier on the test split.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from slmtune.bench.models import Workspace as ModelWorkspace
from slmtune.config import Params
from slmtune.errors import ConfigError

PEER_VENV = Path(".venv-peer")
TOOLS = ("slmtune", "olive")
OLIVE_ENV = {"OLIVE_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
NO_CHECKPOINT = 10**6  # train.save_steps beyond any run here
MAX_SEQ_LEN = 64  # Olive pads (and truncates) every row to this many tokens; the longest row must fit


@dataclasses.dataclass(frozen=True)
class Job:
    """One comparison: a conf/model entry, how many optimizer steps (None: the configured epochs), what runs."""

    model: str
    steps: int | None
    train_only: bool  # only the fine-tuning (train_lora; Olive's LoRA pass): the bench model's throughput
    pairs: int

    def check(self) -> None:
        if self.pairs < 1:
            raise ConfigError(f"--pairs is {self.pairs}; the comparison needs at least 1 pair (3 for a spread)")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps is {self.steps}; it must be at least 1")


@dataclasses.dataclass(frozen=True)
class Workspace(ModelWorkspace):
    """The bench's work folder (splits in data/, the base in base/), plus params.yaml and one folder per run."""

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    def run(self, tool: str, number: int) -> Path:
        return self.root / f"{tool}-{number}"


# ---------------------------------------------------------------------------- the shared work


def job_overrides(job: Job, rows: int | None = None) -> list[str]:
    """The job's Hydra overrides: its model without `modules_to_save`, its steps as epochs of `rows` rows, and
    for a training-only job neither evaluation nor checkpoints."""
    from slmtune.config import compose

    overrides = [f"model={job.model}", "model.modules_to_save=[]"]
    if job.train_only:  # training throughput alone, as Olive's pass trains: no evaluation, no checkpoint
        overrides += ["train.eval_strategy=no", f"train.save_steps={NO_CHECKPOINT}"]
    if job.steps is not None and rows is not None:
        overrides.append(f"train.num_train_epochs={job.steps / steps_per_epoch(compose(overrides), rows)!r}")
    return overrides


def steps_per_epoch(params: Params, rows: int) -> int:
    """Optimizer steps in one pass over `rows` training rows (the trainer's count, on one process)."""
    return math.ceil(rows / params.hw.per_device_train_batch_size / params.hw.gradient_accumulation_steps)


def total_steps(params: Params, rows: int) -> int:
    """Optimizer steps of a run, as the trainer counts them for `train.num_train_epochs`."""
    return math.ceil(params.train.num_train_epochs * steps_per_epoch(params, rows))


def prepare_workspace(job: Job, workspace: Workspace) -> Params:
    """Splits and base for the job (`prepare`, with the bench model's vocabulary grown), and params.yaml."""
    from slmtune.bench.models import prepare_base
    from slmtune.config import compose, write_params
    from slmtune.data import read_jsonl

    workspace.root.mkdir(parents=True, exist_ok=True)
    prepare_base(workspace, compose(job_overrides(job)))
    return write_params(workspace.params, job_overrides(job, rows=len(read_jsonl(workspace.data / "train.jsonl"))))


def row_tokens(workspace: Workspace) -> list[int]:
    """Tokens in each training row's text (prompt and completion): what either trainer computes for real."""
    from slmtune.data import read_jsonl
    from slmtune.models import load_tokenizer

    tokenizer = load_tokenizer(workspace.base)
    rows = read_jsonl(workspace.data / "train.jsonl")
    return [len(tokenizer(row["prompt"] + row["completion"], add_special_tokens=False)["input_ids"]) for row in rows]


def olive_config(params: Params, workspace: Workspace, run: Path, train_only: bool) -> dict[str, Any]:
    """Olive's workflow for the same work: the LoRA pass with the same settings, then merge and int4 build."""
    train, hw = params.train, params.hw
    training_args = {
        "per_device_train_batch_size": hw.per_device_train_batch_size,
        "gradient_accumulation_steps": hw.gradient_accumulation_steps,
        "num_train_epochs": train.num_train_epochs,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler_type,
        "warmup_ratio": train.warmup_steps if train.warmup_steps < 1 else 0.0,
        "warmup_steps": 0 if train.warmup_steps < 1 else int(train.warmup_steps),
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "logging_steps": train.logging_steps,
        "gradient_checkpointing": False,
        "seed": params.seed,
        "data_seed": params.seed,
        "report_to": "none",
        "output_dir": str(run / "checkpoints"),
        "overwrite_output_dir": True,
    }
    passes: dict[str, Any] = {
        "lora": {
            "type": "LoRA",
            "r": train.r,
            "alpha": train.lora_alpha,
            "lora_dropout": train.lora_dropout,
            "target_modules": list(params.model.lora_target_modules),
            "torch_dtype": "float32",
            "train_data_config": "train",
            "training_args": training_args,
        }
    }
    if not train_only:
        passes["merge"] = {"type": "MergeAdapterWeights"}
        passes["builder"] = {
            "type": "ModelBuilder",
            "precision": "int4",
            "int4_block_size": params.build.block_size,
            "int4_accuracy_level": params.build.accuracy_level,
            "int4_is_symmetric": params.build.symmetric,
        }
    return {
        "input_model": {"type": "HfModel", "model_path": str(workspace.base.resolve()), "task": "text-generation"},
        "systems": {
            "local_system": {
                "type": "LocalSystem",
                "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}],
            }
        },
        "data_configs": [
            {
                "name": "train",
                "type": "HuggingfaceContainer",
                "load_dataset_config": {
                    "data_name": "json",
                    "data_files": str((workspace.data / "train.jsonl").resolve()),
                    "split": "train",
                },
                "pre_process_data_config": {
                    "strategy": "line-by-line",
                    "text_template": "{prompt}{completion}",
                    "max_seq_len": MAX_SEQ_LEN,
                    "pad_to_max_len": True,
                    "add_special_tokens": False,
                },
            }
        ],
        "passes": passes,
        "host": "local_system",
        "target": "local_system",
        "cache_dir": str((run / "cache").resolve()),  # a fresh cache per run: Olive would reuse a cached pass
        "output_dir": str((run / "out").resolve()),
        "log_severity_level": 1,
    }


# ---------------------------------------------------------------------------- running and timing


@dataclasses.dataclass(frozen=True)
class Process:
    """What one process cost: wall, user and system seconds."""

    wall_s: float
    user_s: float
    sys_s: float


def timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Process:
    """Run `command` to completion (output to `log`); its wall time and the CPU time of it and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as output:
        completed = subprocess.run(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {completed.returncode}); {log}:\n{tail}")
    return Process(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def stage_commands(workspace: Workspace, run: Path, train_only: bool) -> dict[str, list[str]]:
    """The stage processes dvc.yaml starts, with this job's paths (`python` is this environment's)."""
    params = ["--params", str(workspace.params)]
    commands = {
        "train_lora": [
            *("python", "-m", "slmtune.stages.train_lora", *params),
            *("--data", str(workspace.data), "--base", str(workspace.base), "--out", str(run / "adapter")),
            *("--metrics", str(run / "train.json"), "--run-metrics", str(run / "train_run.json")),
            *("--live", str(run / "live")),
        ],
        "merge": [
            *("python", "-m", "slmtune.stages.merge", *params),
            *("--base", str(workspace.base), "--adapter", str(run / "adapter"), "--out", str(run / "merged")),
        ],
        "build_int4": [
            *("python", "-m", "slmtune.stages.build_int4", *params),
            *("--merged", str(run / "merged"), "--out", str(run / "int4")),
        ],
    }
    return {name: command for name, command in commands.items() if not train_only or name == "train_lora"}


def run_slmtune(workspace: Workspace, run: Path, train_only: bool) -> dict[str, Any]:
    """train_lora, merge and build_int4, one process each; timings and the trainer's own figures."""
    from slmtune.environment import child_env

    run.mkdir(parents=True)
    env = child_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    stages = {
        name: timed(command, workspace.root, env, run / "log.txt")
        for name, command in stage_commands(workspace, run, train_only).items()
    }
    train = json.loads((run / "train.json").read_text())
    train_run = json.loads((run / "train_run.json").read_text())
    return {
        **_total(list(stages.values())),
        "stages_wall_s": {name: round(process.wall_s, 2) for name, process in stages.items()},
        "train_runtime_s": train_run["train_runtime_s"],
        "steps": train["steps"],
        "counted_train_tokens": train["train_tokens"],
        "int4": None if train_only else str(run / "int4"),
    }


def run_olive(olive: Path, params: Params, workspace: Workspace, run: Path, train_only: bool) -> dict[str, Any]:
    """`olive run` over the same work in one process; timings and its trainer's own runtime."""
    run.mkdir(parents=True)
    config = run / "olive.json"
    config.write_text(json.dumps(olive_config(params, workspace, run, train_only), indent=2) + "\n")
    env = {**os.environ, **OLIVE_ENV}
    env.pop("PYTHONPATH", None)
    process = timed([str(olive), "run", "--config", str(config)], workspace.root, env, run / "log.txt")
    log = (run / "log.txt").read_text(encoding="utf-8", errors="replace")
    runtime = re.findall(r"'train_runtime': '?([0-9.]+)", log)
    if not runtime:
        raise RuntimeError(f"{run / 'log.txt'}: Olive's log has no train_runtime; did its LoRA pass run?")
    return {
        **_total([process]),
        "stages_wall_s": {"olive run": round(process.wall_s, 2)},
        "train_runtime_s": float(runtime[-1]),
        "int4": None if train_only else str(run / "out"),
    }


def _total(processes: list[Process]) -> dict[str, float]:
    wall, user, system = (sum(getattr(p, key) for p in processes) for key in ("wall_s", "user_s", "sys_s"))
    return {"wall_s": round(wall, 2), "cpu_s": round(user + system, 2), "sys_s": round(system, 2)}


# ---------------------------------------------------------------------------- scoring and the summary


def accuracy(folder: Path, workspace: Workspace, params: Params) -> float:
    """Test-split accuracy of an int4 folder with slmtune's classifier (the base's task card given to Olive's)."""
    from slmtune.data import read_jsonl
    from slmtune.evaluation import classification_metrics
    from slmtune.prompts import TASK_FILE, Task
    from slmtune.scoring import load_classifier, predict

    task = Task.load(workspace.base)
    if not (folder / TASK_FILE).is_file():
        task.save(folder)
    classifier = load_classifier(
        folder, batch_size=params.eval.batch_size, max_new_tokens=params.eval.max_new_tokens, hw=params.hw
    )
    rows = read_jsonl(workspace.data / "test.jsonl")
    predicted = predict(classifier, [row["phrase"] for row in rows])
    return classification_metrics([row["label"] for row in rows], predicted, task.labels)["accuracy"]


def summarise(runs: dict[str, list[dict[str, Any]]], tokens_per_row: list[int], params: Params) -> dict[str, Any]:
    """Medians per tool, per-pair ratios (slmtune over Olive), and the real tokens each trained per second."""
    rows = len(tokens_per_row)
    steps = total_steps(params, rows)
    real_tokens = sum(tokens_per_row) * steps / steps_per_epoch(params, rows)  # exact for whole epochs
    tools: dict[str, Any] = {}
    for tool, results in runs.items():
        for result in results:
            result["per_step_ms"] = round(1000 * result["train_runtime_s"] / steps, 2)
            result["real_tokens_per_s"] = round(real_tokens / result["train_runtime_s"], 1)
        tools[tool] = {
            key: _median(results, key)
            for key in ("wall_s", "cpu_s", "sys_s", "train_runtime_s", "per_step_ms", "real_tokens_per_s")
        }
        scores = [r["accuracy"] for r in results if r.get("accuracy") is not None]
        tools[tool]["accuracy"] = min(scores) if scores else None
    pairs = list(zip(runs["slmtune"], runs["olive"], strict=True))
    ratios = {
        key: [round(mine[key] / theirs[key], 3) for mine, theirs in pairs]
        for key in ("wall_s", "cpu_s", "sys_s", "per_step_ms", "real_tokens_per_s")
    }
    return {
        "steps": steps,
        "rows": rows,
        "mean_row_tokens": round(sum(tokens_per_row) / rows, 2),
        "olive_padded_row_tokens": MAX_SEQ_LEN,
        "real_tokens": round(real_tokens),
        "tools": tools,
        "ratios": {key: {"median": statistics.median(values), "runs": values} for key, values in ratios.items()},
    }


def _median(results: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in results), 3)


# ---------------------------------------------------------------------------- the whole comparison


def compare(job: Job, olive: Path, root: Path, say=print) -> dict[str, Any]:
    """Prepare the job's work, run the pairs in alternating order, score the int4 folders, summarise."""
    job.check()
    workspace = Workspace(root / job.model)
    shutil.rmtree(workspace.root, ignore_errors=True)
    say(f"[peer] {job.model}: prepare (splits and base, no modules_to_save)")
    params = prepare_workspace(job, workspace)
    tokens_per_row = row_tokens(workspace)
    if max(tokens_per_row) > MAX_SEQ_LEN:
        raise ConfigError(f"a training row has {max(tokens_per_row)} tokens; Olive's max_seq_len is {MAX_SEQ_LEN}")
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    for pair in range(job.pairs):
        order = TOOLS if pair % 2 == 0 else tuple(reversed(TOOLS))  # ABBA: a drifting machine favours neither
        for tool in order:
            run = workspace.run(tool, pair)
            if tool == "slmtune":
                result = run_slmtune(workspace, run, job.train_only)
            else:
                result = run_olive(olive, params, workspace, run, job.train_only)
            runs[tool].append(result)
            say(f"[peer] {job.model} pair {pair + 1}/{job.pairs}: {tool} {result['wall_s']:.1f} s")
    if not job.train_only:
        for results in runs.values():
            for result in results:
                result["accuracy"] = accuracy(Path(result["int4"]), workspace, params)
    return {
        "model": job.model,
        "train_only": job.train_only,
        "pairs": job.pairs,
        "settings": _settings(params),
        **summarise(runs, tokens_per_row, params),
        "runs": runs,
    }


def _settings(params: Params) -> dict[str, Any]:
    train = params.train
    return {
        "r": train.r,
        "lora_alpha": train.lora_alpha,
        "lora_dropout": train.lora_dropout,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler_type,
        "num_train_epochs": train.num_train_epochs,
        "batch": params.hw.per_device_train_batch_size,
        "target_modules": list(params.model.lora_target_modules),
        "modules_to_save": list(params.model.modules_to_save),
    }


# ---------------------------------------------------------------------------- the report


def versions(olive: Path) -> dict[str, dict[str, str]]:
    """The versions that did the work, on each side (Olive's read by its own interpreter)."""
    from importlib.metadata import version

    names = ["torch", "transformers", "peft", "accelerate", "onnxruntime", "onnxruntime-genai"]
    probe = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    command = [str(olive.parent / "python"), "-c", probe, "olive-ai", *names]
    theirs = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return {"slmtune": {name: version(name) for name in ["trl", *names]}, "olive": theirs}


def markdown(results: dict[str, Any]) -> str:
    """The bench/README.md section: the tables, how they were measured, and how to rerun them."""
    lines = [
        "## Against the peer: Olive (`make bench-peer`)",
        "",
        f"Written by `make bench-peer` on {results['date']}, in {results['minutes']} minutes, on this machine "
        f"({results['machine']}). slmtune: {_versions(results['versions']['slmtune'])}; Olive: "
        f"{_versions(results['versions']['olive'])}. Both fine-tune the same base on the same training rows with the "
        "same LoRA settings (no `modules_to_save`: Olive refuses it); each figure is the median of the pairs, run in "
        "alternating order, with the slmtune / Olive ratio of each pair in brackets. Raw runs: `bench/peer.json`.",
        "",
    ]
    for job in results["jobs"].values():
        lines += _job_table(job)
    lines += [
        "slmtune's time is its three stage processes as dvc.yaml starts them (DVC's own ~0.4 s a stage left out); "
        "Olive's is one `olive run` (LoRA -> MergeAdapterWeights -> ModelBuilder int4). Per step is the trainer's "
        "own runtime over its steps (slmtune's includes its per-epoch evaluation and checkpoints). Real tokens are "
        "the rows' own tokens (prompt and completion), the same count for both; Olive computes "
        f"{MAX_SEQ_LEN} a row (it pads every row), slmtune pads per batch. Accuracy: the int4 folder on the test "
        "split, scored by slmtune's classifier, the lowest over the runs.",
        "",
    ]
    return "\n".join(lines)


def _job_table(job: dict[str, Any]) -> list[str]:
    mine, theirs, ratios = job["tools"]["slmtune"], job["tools"]["olive"], job["ratios"]
    what = "train_lora" if job["train_only"] else "train_lora + merge + build_int4"
    settings = job["settings"]
    rows = [
        (f"{what}, wall (s)", "wall_s", 1),
        ("CPU time, user + system (s)", "cpu_s", 1),
        ("system time (s)", "sys_s", 1),
        ("training, per step (ms)", "per_step_ms", 1),
        ("training, real tokens/s", "real_tokens_per_s", 0),
    ]
    lines = [
        f"### `model={job['model']}`: {job['steps']} steps of {settings['batch']} rows, r {settings['r']}, "
        f"{job['pairs']} pairs",
        "",
        "| | slmtune | Olive | slmtune / Olive |",
        "|---|---|---|---|",
    ]
    for title, key, digits in rows:
        spread = ratios[key]["runs"]
        lines.append(
            f"| {title} | {mine[key]:,.{digits}f} | {theirs[key]:,.{digits}f} | "
            f"{ratios[key]['median']:.2f}x [{min(spread):.2f}–{max(spread):.2f}] |"
        )
    if not job["train_only"]:
        lines.append(f"| int4 accuracy (test) | {mine['accuracy']:.3f} | {theirs['accuracy']:.3f} | |")
    return [*lines, ""]


def _versions(found: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in found.items())


def write(results: dict[str, Any], out: Path) -> list[Path]:
    """bench/peer.json and the peer section of bench/README.md, each written atomically."""
    from slmtune.atomic import atomic_write_json
    from slmtune.bench.report import TABLE, replace_section

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "peer.json", results)
    replace_section(out / TABLE, "peer", markdown(results))
    return [out / "peer.json", out / TABLE]


def main(argv: list[str] | None = None) -> None:
    import argparse
    import datetime
    import tempfile

    from slmtune.bench.run import machine
    from slmtune.config import compose
    from slmtune.environment import set_up_process
    from slmtune.errors import add_debug_flag, exit_on_failure

    parse = argparse.ArgumentParser(prog="python -m slmtune.bench.peer", description=__doc__)
    parse.add_argument("--pairs", type=int, default=3, help="alternating slmtune/Olive pairs per job (default 3)")
    parse.add_argument("--model", default="tiny_phi3", help="conf/model entry of the whole-pipeline job")
    parse.add_argument("--steps", type=int, help="optimizer steps of that job (default: the configured epochs)")
    parse.add_argument("--bench-model", default="bench_phi3", help="conf/model entry of the training-only job")
    parse.add_argument("--bench-steps", type=int, default=6, help="its optimizer steps (0: skip it; default 6)")
    parse.add_argument("--olive", type=Path, default=PEER_VENV / "bin/olive", help="Olive's command")
    parse.add_argument("--out", type=Path, default=Path("bench"))
    parse.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder)")
    add_debug_flag(parse)
    args = parse.parse_args(argv)

    def body() -> None:
        if not args.olive.is_file():
            raise ConfigError(f"{args.olive}: Olive is not installed; `make bench-peer` installs it into {PEER_VENV}")
        params = compose()
        set_up_process(params.hw.cpu_isa, params.hw.num_threads)
        jobs = [Job(args.model, args.steps, train_only=False, pairs=args.pairs)]
        if args.bench_steps:
            jobs.append(Job(args.bench_model, args.bench_steps, train_only=True, pairs=args.pairs))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="slmtune-peer-") as scratch:
            root = args.workdir or Path(scratch)
            results = {job.model: compare(job, args.olive.resolve(), root) for job in jobs}
        found = machine()
        written = write(
            {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "minutes": round((time.perf_counter() - start) / 60, 1),
                "machine": f"{found.get('cpu_count')} CPU cores, {found.get('cpu', 'unknown CPU')}",
                "versions": versions(args.olive),
                "jobs": results,
            },
            args.out,
        )
        print("[peer] wrote " + ", ".join(str(path) for path in written), flush=True)

    exit_on_failure(body, "[peer] failed: ", "[peer] ")


if __name__ == "__main__":
    main()
