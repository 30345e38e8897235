"""Evaluate the artifacts of a generative task side by side: perplexity, exact match, chrF, speed, size.

- perplexity: of the reference answers, teacher-forced, over exactly the tokens training puts the loss on;
- exact match: greedy output equal to the reference (surrounding whitespace aside);
- chrF (sacrebleu, corpus level, 0-100): character n-gram F-score. It credits an answer that is nearly
  right (one wrong field of a JSON command, a reworded sentence) without a tokenizer of its own, so it
  reads the same for code, JSON and prose; ROUGE-L counts whole words and misses near misses in
  identifiers such as `garage_door` or `07:20`;
- latency and tokens/s: greedy generation at batch 1 on the first `eval.latency_examples` prompts.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from slmtune.generation import Sampling, TextGenerator


@dataclass
class GenerationResult:
    """One artifact's outputs and measurements on the test split."""

    name: str
    outputs: list[str]
    nll: float
    tokens: int
    latency_ms: float
    tokens_per_s: float
    size_bytes: int


@dataclass(frozen=True)
class TestRows:
    """The test split of a generative task: prompts, references, and token ids with their loss labels."""

    prompts: list[str]
    references: list[str]
    input_ids: list[list[int]]
    labels: list[list[int]]


def timed_generation(generator: TextGenerator, prompts: list[str], sampling: Sampling, repetitions: int):
    """Median over repetitions of (ms per answer, new tokens per second), greedy, batch 1, after a warm-up."""
    generator.generate(prompts[:1], sampling)
    runs = []
    for _ in range(max(1, repetitions)):
        tokens, start = 0, time.perf_counter()
        for prompt in prompts:
            text = generator.generate([prompt], sampling)[0]
            tokens += len(generator.hf_tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + end of turn
        elapsed = time.perf_counter() - start
        runs.append((elapsed * 1000 / len(prompts), tokens / elapsed if elapsed > 0 else 0.0))
    latency = statistics.median(run[0] for run in runs)
    speed = statistics.median(run[1] for run in runs)
    return round(latency, 3), round(speed, 1)


def evaluate_generator(
    name: str, generator: TextGenerator, test: TestRows, size_bytes: int, sampling: Sampling, latency: tuple[int, int]
) -> GenerationResult:
    """Score the references, generate for every prompt, and time a few answers."""
    nll, tokens = generator.nll(test.input_ids, test.labels)
    outputs = generator.generate(test.prompts, sampling)
    examples, repetitions = latency
    latency_ms, tokens_per_s = timed_generation(generator, test.prompts[:examples], sampling, repetitions)
    return GenerationResult(name, outputs, nll, tokens, latency_ms, tokens_per_s, size_bytes)


def exact_match(outputs: list[str], references: list[str]) -> float:
    """Share of outputs equal to their reference, surrounding whitespace aside."""
    return round(sum(o.strip() == r.strip() for o, r in zip(outputs, references, strict=True)) / len(outputs), 4)


def chrf(outputs: list[str], references: list[str]) -> float:
    """sacrebleu's corpus chrF (0-100)."""
    from sacrebleu.metrics import CHRF

    return round(float(CHRF().corpus_score([o.strip() for o in outputs], [[r.strip() for r in references]]).score), 2)


def perplexity(result: GenerationResult, digits: int | None = 4) -> float:
    """exp of the mean negative log-likelihood per answer token (rounded to `digits` for reports)."""
    value = math.exp(min(result.nll / max(result.tokens, 1), 50.0))
    return value if digits is None else round(value, digits)


def summarise(result: GenerationResult, references: list[str]) -> dict[str, Any]:
    """The metrics block `dvc exp show` reads for one artifact."""
    return {
        "perplexity": perplexity(result),
        "exact_match": exact_match(result.outputs, references),
        "chrf": chrf(result.outputs, references),
        "size_mb": round(result.size_bytes / 2**20, 3),
    }


def agreement(first: list[str], second: list[str]) -> float:
    """Share of prompts on which two artifacts write the same answer."""
    return round(sum(a.strip() == b.strip() for a, b in zip(first, second, strict=True)) / len(first), 4)


def exact_rows(references: list[str], outputs: list[str]) -> list[dict[str, str]]:
    """Rows for DVC's confusion template: each answer exact or different (a 1x2 matrix per artifact)."""
    verdict = {True: "exact", False: "different"}
    return [
        {"actual": "reference", "predicted": verdict[o.strip() == r.strip()]}
        for r, o in zip(references, outputs, strict=True)
    ]


def comparison_rows(metrics: dict[str, dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The rows both kinds share in plots/artifacts.json: `accuracy` (exact match, for generation) and size."""
    return [{"artifact": n, "accuracy": metrics[n]["exact_match"], "size_mb": metrics[n]["size_mb"]} for n in names]


def text_score_rows(metrics: dict[str, dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """plots/generation.json: perplexity, chrF and exact match per artifact, for DVC's bar charts."""
    fields = ("perplexity", "chrf", "exact_match")
    return [{"artifact": name, **{field: metrics[name][field] for field in fields}} for name in names]


def latency_rows(results: dict[str, GenerationResult]) -> list[dict[str, Any]]:
    """Wall-clock rows per artifact: ms per answer and tokens/s (kept apart from the reproducible figures)."""
    return [
        {"artifact": name, "latency_ms": r.latency_ms, "tokens_per_s": r.tokens_per_s} for name, r in results.items()
    ]


def quantization_gate(
    merged: GenerationResult, int4: GenerationResult, references: list[str], max_ppl_ratio: float, max_drop: float
) -> dict[str, Any]:
    """How far int4 falls behind merged: perplexity ratio and exact-match drop."""
    ratio = perplexity(int4, digits=None) / perplexity(merged, digits=None)
    drop = exact_match(merged.outputs, references) - exact_match(int4.outputs, references)
    return {
        "merged_perplexity": perplexity(merged),
        "int4_perplexity": perplexity(int4),
        "perplexity_ratio": round(ratio, 4),
        "max_int4_ppl_ratio": max_ppl_ratio,
        "merged_exact_match": exact_match(merged.outputs, references),
        "int4_exact_match": exact_match(int4.outputs, references),
        "exact_match_drop": round(drop, 4),
        "max_int4_drop": max_drop,
        "same_output": agreement(merged.outputs, int4.outputs),
        "passed": ratio <= max_ppl_ratio + 1e-12 and drop <= max_drop + 1e-12,
    }


def gate_summary(gate: dict[str, Any]) -> str:
    """One line with the gate's figures and thresholds."""
    return (
        f"int4 perplexity {gate['int4_perplexity']:.4f} vs merged {gate['merged_perplexity']:.4f} "
        f"(ratio {gate['perplexity_ratio']:.4f}, allowed eval.max_int4_ppl_ratio={gate['max_int4_ppl_ratio']:g}); "
        f"exact match {gate['int4_exact_match']:.4f} vs {gate['merged_exact_match']:.4f} "
        f"(drop {gate['exact_match_drop']:+.4f}, allowed eval.max_int4_drop={gate['max_int4_drop']:g}); "
        f"the same answer on {gate['same_output']:.2%} of test prompts"
    )


def gate_failure_message(gate: dict[str, Any]) -> str:
    """The one-paragraph error for a failed gate: the figures, what to change, where to look."""
    return (
        f"quantization gate: the int4 model falls too far behind the merged model: {gate_summary(gate)}. "
        "Rebuild it finer (a smaller build.block_size, build.accuracy_level=1, build.quantize_embeddings=false), "
        "or accept the loss by raising the threshold (`dvc exp run -S eval.max_int4_ppl_ratio=1.1` or "
        "`-S eval.max_int4_drop=0.05`). Every figure is in metrics/eval.json (gate.passed=false)"
    )
