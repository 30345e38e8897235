"""Evaluate artifacts side by side: accuracy, F1, confusion, latency and size."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from slmtune.environment import import_without_collector
from slmtune.scoring import Classifier, generated_labels, predict


@dataclass
class ArtifactResult:
    """One artifact's predictions and measurements on the test split."""

    name: str
    predictions: list[str]
    generated: list[str]
    latency_ms: float
    size_bytes: int


def classification_metrics(truth: list[str], predicted: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class F1 over the task's labels."""
    import_without_collector("sklearn.metrics")
    from sklearn.metrics import accuracy_score, f1_score

    per_class = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)), 4),
        "f1": {label: round(float(value), 4) for label, value in zip(labels, per_class, strict=True)},
    }


def batch1_latency_ms(classifier: Classifier, phrases: list[str], repetitions: int) -> float:
    """Median over repetitions of the mean time to classify one phrase at batch size 1 (after a warm-up)."""
    predict(classifier, phrases[:1])
    runs = []
    for _ in range(max(1, repetitions)):
        start = time.perf_counter()
        for phrase in phrases:
            predict(classifier, [phrase])
        runs.append((time.perf_counter() - start) * 1000 / len(phrases))
    return round(statistics.median(runs), 3)


def evaluate_artifact(
    name: str, classifier: Classifier, phrases: list[str], size_bytes: int, latency_examples: int, repetitions: int
) -> ArtifactResult:
    """Score every phrase, generate for every phrase, and time a few at batch size 1."""
    predictions = predict(classifier, phrases)
    generated = generated_labels(classifier, phrases)
    latency = batch1_latency_ms(classifier, phrases[:latency_examples], repetitions)
    return ArtifactResult(name, predictions, generated, latency, size_bytes)


def summarise(result: ArtifactResult, truth: list[str], labels: list[str]) -> dict[str, Any]:
    """The metrics block `dvc exp show` reads for one artifact."""
    scored = classification_metrics(truth, result.predictions, labels)
    generated = classification_metrics(truth, result.generated, labels)
    return {
        **scored,
        "generation_accuracy": generated["accuracy"],
        "generation_macro_f1": generated["macro_f1"],
        "size_mb": round(result.size_bytes / 2**20, 3),
    }


def agreement(first: list[str], second: list[str]) -> float:
    """Share of examples on which two artifacts predict the same label."""
    return round(sum(a == b for a, b in zip(first, second, strict=True)) / len(first), 4)


def comparison_rows(metrics: dict[str, dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """One row per artifact for DVC's bar charts: accuracy, macro-F1 and size side by side."""
    fields = ("accuracy", "macro_f1", "size_mb")
    return [{"artifact": name, **{field: metrics[name][field] for field in fields}} for name in names]


def latency_rows(results: dict[str, ArtifactResult]) -> list[dict[str, Any]]:
    """One row per artifact for DVC's latency bar chart (wall-clock: kept apart from the reproducible figures)."""
    return [{"artifact": name, "latency_ms": result.latency_ms} for name, result in results.items()]


def confusion_rows(truth: list[str], predicted: list[str]) -> list[dict[str, str]]:
    """Rows for DVC's confusion template."""
    return [{"actual": a, "predicted": p} for a, p in zip(truth, predicted, strict=True)]


def quantization_gate(
    merged: ArtifactResult, int4: ArtifactResult, truth: list[str], max_drop: float, max_disagreement: float
) -> dict[str, Any]:
    """How far int4 falls behind merged: label-scoring accuracy drop and share of changed generated labels."""
    examples = len(truth)
    correct = {r.name: sum(p == t for p, t in zip(r.predictions, truth, strict=True)) for r in (merged, int4)}
    changed = sum(a != b for a, b in zip(merged.generated, int4.generated, strict=True))
    drop = (correct[merged.name] - correct[int4.name]) / examples
    disagreement = changed / examples
    return {
        "merged_accuracy": round(correct[merged.name] / examples, 4),
        "int4_accuracy": round(correct[int4.name] / examples, 4),
        "accuracy_drop": round(drop, 4),
        "max_int4_drop": max_drop,
        "disagreement": round(disagreement, 4),
        "disagreeing_examples": changed,
        "max_disagreement": max_disagreement,
        "passed": drop <= max_drop + 1e-12 and disagreement <= max_disagreement + 1e-12,
    }


def gate_summary(gate: dict[str, Any]) -> str:
    """One line with the gate's figures and thresholds."""
    return (
        f"int4 accuracy {gate['int4_accuracy']:.4f} vs merged {gate['merged_accuracy']:.4f} "
        f"(drop {gate['accuracy_drop']:+.4f}, allowed eval.max_int4_drop={gate['max_int4_drop']:g}); "
        f"int4's generated label differs from merged's on {gate['disagreement']:.2%} of test phrases "
        f"({gate['disagreeing_examples']}, allowed eval.max_disagreement={gate['max_disagreement']:g})"
    )


def gate_failure_message(gate: dict[str, Any]) -> str:
    """The one-paragraph error for a failed gate: the figures, what to change, where to look."""
    return (
        f"quantization gate: the int4 model falls too far behind the merged model: {gate_summary(gate)}. "
        "Rebuild it finer (a smaller build.block_size, build.accuracy_level=1, build.symmetric=true, "
        "build.quantize_embeddings=false, build.algorithm=default), or accept the loss by raising the threshold "
        "(`dvc exp run -S eval.max_int4_drop=0.05` or `-S eval.max_disagreement=0.1`). "
        "Every figure is in metrics/eval.json (gate.passed=false; `dvc metrics show`) and in the table above; "
        "DVC records no experiment for a failed stage (a queued one's output: `dvc queue logs NAME`)"
    )
