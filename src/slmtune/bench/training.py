"""Training throughput: `train_lora`'s training code with per-batch padding vs padding-free batches.

Every run trains the same rows (the first `steps x batch` of the prepared training split) for the
same steps from the same seed, through `slmtune.training.train_adapter`; only `train.padding_free`
differs. Two runs per mode, in ABBA order. A callback stamps the time at each optimizer step; each
run's first step is its warm-up.
"""

from __future__ import annotations

import dataclasses
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from slmtune.bench.timing import stats
from slmtune.config import Params
from slmtune.data import read_jsonl, write_jsonl

MODES = {"padded": False, "padding_free": True}  # the value of train.padding_free
ORDER = ("padded", "padding_free", "padding_free", "padded")  # ABBA: a machine that speeds up or slows down
# during the runs (other work on it) favours neither mode
EVAL_ROWS = 8  # train_adapter evaluates once at the end; a few rows keep that short
LOSS_TOLERANCE = 0.02  # final losses within 2% of each other "agree" (LoRA dropout draws differ by layout)


def step_timer():
    """A TrainerCallback that stamps the wall-clock time at the end of every optimizer step.

    It keeps the trainer's log history too (trl logs the running count of non-padding tokens).
    """
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: dict[int, float] = {}
            self.history: list[dict[str, Any]] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.history = list(state.log_history)

    return StepTimer()


def training_params(params: Params, padding_free: bool) -> Params:
    """One epoch over the subset, no evaluation or checkpoint during the run, the loss logged every step."""
    train = dataclasses.replace(
        params.train,
        padding_free=padding_free,
        num_train_epochs=1.0,
        eval_strategy="no",
        save_steps=10**9,
        logging_steps=1,
    )
    return dataclasses.replace(params, train=train)


def write_subset(prepared: Path, out: Path, rows: int) -> list[dict]:
    """The first `rows` training rows (and a few validation rows) as a prepared data folder."""
    train = read_jsonl(prepared / "train.jsonl")
    if len(train) < rows:
        raise ValueError(f"{prepared}/train.jsonl has {len(train)} rows; the benchmark needs {rows}")
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", train[:rows])
    write_jsonl(out / "val.jsonl", read_jsonl(prepared / "val.jsonl")[:EVAL_ROWS])
    return train[:rows]


def padding_overhead(lengths: list[int], batch: int, seed: int, draws: int = 200) -> float:
    """Tokens a padded batch computes per real token, averaged over random batchings of `lengths`.

    Dropping the padding can speed training up by at most this factor.
    """
    rng = np.random.default_rng(seed)
    lengths_array = np.asarray(lengths)
    padded = 0
    for _ in range(draws):
        order = rng.permutation(lengths_array)
        padded += sum(int(chunk.max()) * len(chunk) for chunk in np.array_split(order, -(-len(order) // batch)))
    return round(padded / (draws * int(lengths_array.sum())), 3)


def timed_steps(ends: dict[int, float], history: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Non-padding tokens and seconds of every step after the first (the warm-up).

    `ends` maps each step to the time it ended; `history` is the trainer's log, one entry per step
    with the running count of non-padding tokens (`num_tokens`).
    """
    tokens = {int(entry["step"]): float(entry["num_tokens"]) for entry in history if "num_tokens" in entry}
    steps = sorted(step for step in ends if step in tokens)
    if len(steps) < 2:
        raise ValueError("training throughput needs at least two logged steps (one is the warm-up)")
    pairs = list(pairwise(steps))
    return [tokens[b] - tokens[a] for a, b in pairs], [ends[b] - ends[a] for a, b in pairs]


def run_mode(params: Params, base: Path, data: Path, work: Path, padding_free: bool, adapter: Path | None):
    """Train once through train_adapter; its losses and the tokens and seconds of each timed step."""
    from slmtune.training import train_adapter

    timer = step_timer()
    metrics = train_adapter(training_params(params, padding_free), base, data, work, adapter, extra_callbacks=[timer])
    tokens, seconds = timed_steps(timer.ends, timer.history)
    return {"tokens": tokens, "seconds": seconds, "final_loss": metrics["final_train_loss"], **metrics}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode's runs together: tokens/second over every timed step, the per-step spread, the losses."""
    tokens = [t for run in runs for t in run["tokens"]]
    seconds = [s for run in runs for s in run["seconds"]]
    return {
        "tokens_per_second": round(sum(tokens) / sum(seconds), 1),
        "per_step_tokens_per_second": stats([t / s for t, s in zip(tokens, seconds, strict=True)], 1),
        "runs": len(runs),
        "steps": runs[0]["steps"],
        "timed_steps": len(tokens),
        "timed_tokens": int(sum(tokens)),
        "final_loss": runs[0]["final_loss"],
        "mean_loss": runs[0]["train_loss"],
        "final_losses": [run["final_loss"] for run in runs],
    }


def compare(params: Params, base: Path, prepared: Path, work: Path, steps: int, adapter: Path) -> dict[str, Any]:
    """Padded and padding-free runs on the same rows, in ABBA order; the first padded run saves `adapter`."""
    from slmtune.models import load_tokenizer
    from slmtune.tokenization import row_segments

    batch = params.hw.per_device_train_batch_size * params.hw.gradient_accumulation_steps
    rows = write_subset(prepared, work / "data", steps * batch)
    tokenizer = load_tokenizer(base)
    texts = ["".join(text for text, _ in row_segments(row, tokenizer.eos_token)) for row in rows]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for index, mode in enumerate(ORDER):
        out = adapter if mode == "padded" and not runs[mode] else None
        print(f"[bench] training run {index + 1} of {len(ORDER)}: {mode.replace('_', '-')}", flush=True)
        runs[mode].append(run_mode(params, base, work / "data", work / f"run_{index}", MODES[mode], out))
    padded, free = summarise(runs["padded"]), summarise(runs["padding_free"])
    difference = abs(free["final_loss"] - padded["final_loss"])
    return {
        "steps": steps,
        "batch_size": batch,
        "rows": len(rows),
        "order": list(ORDER),
        "mean_row_tokens": round(float(np.mean(lengths)), 1),
        "padding_overhead": padding_overhead(lengths, batch, params.seed),
        "padded": padded,
        "padding_free": free,
        "speedup": round(free["tokens_per_second"] / padded["tokens_per_second"], 3),
        "final_loss_difference": round(difference, 6),
        "losses_agree": difference <= LOSS_TOLERANCE * max(abs(padded["final_loss"]), 1e-6),
    }
