"""Evaluate artifacts side by side: accuracy, F1, confusion, latency and size."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

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
        "latency_ms": result.latency_ms,
        "size_mb": round(result.size_bytes / 2**20, 3),
    }


def agreement(first: list[str], second: list[str]) -> float:
    """Share of examples on which two artifacts predict the same label."""
    return round(sum(a == b for a, b in zip(first, second, strict=True)) / len(first), 4)


def confusion_rows(truth: list[str], predicted: list[str]) -> list[dict[str, str]]:
    """Rows for DVC's confusion template."""
    return [{"actual": a, "predicted": p} for a, p in zip(truth, predicted, strict=True)]
