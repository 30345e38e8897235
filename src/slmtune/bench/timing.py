"""Timing: warm-up, repetitions interleaved across contenders, median and spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def stats(values: list[float], digits: int = 3) -> dict[str, Any]:
    """Median, min and max of repeated measurements, with the runs themselves."""
    if not values:
        raise ValueError("no measurements to summarise")
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def seconds(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(contenders: dict[str, Callable[[], float]], warmup: int, repetitions: int) -> dict[str, list[float]]:
    """Call each contender `warmup` times untimed, then `repetitions` rounds of one call each, in turn.

    A contender returns its own figure (a latency or a rate). Taking turns within each round means a
    machine that slows down for a while (other work on it) slows every contender alike.
    """
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(max(1, repetitions)):
        for name, fn in contenders.items():
            results[name].append(fn())
    return results


class Progress:
    """Numbered, timed progress lines on stdout: the benchmark takes minutes."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def step(self, what: str) -> _Step:
        self.done += 1
        return _Step(f"[bench] ({self.done}/{self.total}) {what}")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class _Step:
    def __init__(self, label: str):
        self.label = label

    def __enter__(self) -> _Step:
        print(f"{self.label} ...", flush=True)
        self.start = time.perf_counter()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        status = "done" if kind is None else "failed"
        print(f"{self.label}: {status} in {time.perf_counter() - self.start:.1f}s", flush=True)
