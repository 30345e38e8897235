"""Inference figures for each artifact: classification latency and throughput, decode speed, eval throughput.

Classification goes through the project's scoring classifiers (`load_classifier`, `predict`,
`generated_labels`); decode speed through transformers' `generate` and ONNX Runtime GenAI's
generator, both fed the same prompt token ids and forced to produce the same number of tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmtune.bench.timing import interleaved, seconds, stats


def load_classifiers(folders: dict[str, Path], batch_size: int, max_new_tokens: int) -> dict[str, Any]:
    """One scoring classifier per artifact (ONNX Runtime GenAI or PyTorch, by folder)."""
    from slmtune.scoring import load_classifier

    return {
        name: load_classifier(folder, batch_size=batch_size, max_new_tokens=max_new_tokens)
        for name, folder in folders.items()
    }


def classification(
    classifiers: dict[str, Any], single: list[str], many: list[str], warmup: int, repetitions: int
) -> dict[str, dict[str, Any]]:
    """Label-scoring latency per phrase at batch 1 (ms, over `single`) and phrases/second for `many` at once."""
    from slmtune.scoring import predict

    def one_at_a_time(classifier: Any) -> Callable[[], float]:
        def run() -> float:
            total = sum(seconds(lambda phrase=phrase: predict(classifier, [phrase])) for phrase in single)
            return total * 1000 / len(single)

        return run

    def all_at_once(classifier: Any) -> Callable[[], float]:
        return lambda: len(many) / seconds(lambda: predict(classifier, many))

    latency = interleaved({n: one_at_a_time(c) for n, c in classifiers.items()}, warmup, repetitions)
    rate = interleaved({n: all_at_once(c) for n, c in classifiers.items()}, warmup, repetitions)
    return {
        name: {"batch1_ms_per_phrase": stats(latency[name]), "batch_phrases_per_s": stats(rate[name])}
        for name in classifiers
    }


def eval_throughput(
    classifiers: dict[str, Any], many: list[str], warmup: int, repetitions: int
) -> dict[str, dict[str, Any]]:
    """Phrases/second of evaluation by label scoring and by greedy generation, on the same phrases."""
    from slmtune.scoring import generated_labels, predict

    contenders: dict[str, Callable[[], float]] = {}
    for name, classifier in classifiers.items():
        contenders[f"{name}/scoring"] = lambda c=classifier: len(many) / seconds(lambda: predict(c, many))
        contenders[f"{name}/generation"] = lambda c=classifier: len(many) / seconds(lambda: generated_labels(c, many))
    rates = interleaved(contenders, warmup, repetitions)
    results = {}
    for name in classifiers:
        scoring, generation = stats(rates[f"{name}/scoring"]), stats(rates[f"{name}/generation"])
        results[name] = {
            "label_scoring_phrases_per_s": scoring,
            "greedy_generation_phrases_per_s": generation,
            "scoring_over_generation": round(scoring["median"] / generation["median"], 3),
        }
    return results


class _Stamps:
    """A transformers streamer that stamps the time of each chunk `generate` emits (prompt, then tokens)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def torch_generation(folder: Path) -> Callable[[list[int], int], tuple[float, float]]:
    """Greedy generation with transformers; returns (prefill seconds, seconds for the tokens after the first)."""
    import torch

    from slmtune.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(folder)
    pad = load_tokenizer(folder).pad_token_id

    def run(prompt_ids: list[int], new_tokens: int) -> tuple[float, float]:
        stamps = _Stamps()
        ids = torch.tensor([prompt_ids])
        with torch.no_grad():
            output = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                min_new_tokens=new_tokens,
                max_new_tokens=new_tokens,
                pad_token_id=pad,
                streamer=stamps,
            )
        _check_count(output.shape[1] - len(prompt_ids), new_tokens)
        return stamps.times[1] - stamps.times[0], stamps.times[-1] - stamps.times[1]

    return run


def genai_generation(
    folder: Path, loaded: Any = None, adapter: Any = None
) -> Callable[[list[int], int], tuple[float, float]]:
    """Greedy generation with ONNX Runtime GenAI; returns (prefill seconds, seconds for the tokens after the first).

    `loaded`: the folder's og.Model, already loaded; `adapter`: a runtime_adapters.ActiveAdapter made active.
    """
    import numpy as np

    from slmtune.ortgenai import load_model, new_generator

    model = loaded or load_model(folder)

    def run(prompt_ids: list[int], new_tokens: int) -> tuple[float, float]:
        length = len(prompt_ids) + new_tokens
        options = {"max_length": length, "min_length": length, "do_sample": False, "batch_size": 1}
        generator = new_generator(model, adapter, **options)
        start = time.perf_counter()
        generator.append_tokens(np.asarray(prompt_ids, dtype=np.int32))  # the prompt, in one pass
        generator.generate_next_token()  # picks the first token from the prompt's logits
        first = time.perf_counter()
        produced = 1
        while not generator.is_done():
            generator.generate_next_token()
            produced += 1
        end = time.perf_counter()
        _check_count(produced, new_tokens)
        return first - start, end - first

    return run


def _check_count(produced: int, expected: int) -> None:
    if produced != expected:
        raise RuntimeError(f"generation produced {produced} tokens instead of the {expected} asked for")


def generation(
    runners: dict[str, Callable[[list[int], int], tuple[float, float]]],
    prompt_ids: list[int],
    new_tokens: int,
    warmup: int,
    repetitions: int,
) -> dict[str, dict[str, Any]]:
    """Batch-1 decode tokens/second (tokens after the first) and prompt tokens/second, per runner."""
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}

    def contender(name: str) -> Callable[[], float]:
        def run() -> float:
            prefill, decode = runners[name](prompt_ids, new_tokens)
            timings[name].append((prefill, decode))
            return decode

        return run

    interleaved({name: contender(name) for name in runners}, warmup, repetitions)
    results = {}
    for name, runs in timings.items():
        timed = runs[warmup:]  # interleaved ran the warm-up calls first
        results[name] = {
            "decode_tokens_per_s": stats([(new_tokens - 1) / decode for _, decode in timed], 2),
            "prompt_tokens_per_s": stats([len(prompt_ids) / prefill for prefill, _ in timed], 1),
            "prompt_tokens": len(prompt_ids),
            "new_tokens": new_tokens,
        }
    return results
