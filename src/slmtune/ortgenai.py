"""ONNX Runtime GenAI: imported with its telemetry off, models loaded with this machine's thread count."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from slmtune.environment import import_without_collector


@cache
def onnxruntime_genai():
    """The `onnxruntime_genai` module, after turning off its and ONNX Runtime's telemetry events (once)."""
    import_without_collector("onnxruntime", "onnxruntime_genai")
    import onnxruntime
    import onnxruntime_genai

    onnxruntime.disable_telemetry_events()
    onnxruntime_genai.disable_telemetry_events()
    return onnxruntime_genai


def load_model(folder: Path | str, threads: int = 0):
    """An `og.Model` for a built folder, its decoder using `threads` intra-op threads (0: every core).

    The thread count belongs to the machine that runs the model, so it is set here, when the model
    loads, never written into the folder (ONNX Runtime's own default left a 2-core machine half idle).
    """
    og = onnxruntime_genai()
    config = og.Config(str(folder))
    session = {"intra_op_num_threads": threads or os.cpu_count() or 1}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": session}}}))
    return og.Model(config)


def open_folder(folder: Path, threads: int = 0):
    """An int4 folder's `og.Model` and `og.Tokenizer`; a clear ModelError when the runtime cannot load it."""
    from slmtune.errors import ModelError

    try:
        model = load_model(folder, threads)
        return model, onnxruntime_genai().Tokenizer(model)
    except Exception as err:  # onnxruntime-genai raises plain RuntimeError
        raise ModelError(
            f"{folder}: ONNX Runtime GenAI cannot load this folder: {str(err).strip()[:300]}; "
            "restore it (`dvc checkout` or `dvc pull`) or rerun build_int4"
        ) from err


def new_generator(model, adapter=None, **search_options):
    """An `og.Generator` with these search options, `adapter` (runtime_adapters.ActiveAdapter) active on it."""
    og = onnxruntime_genai()
    params = og.GeneratorParams(model)
    params.set_search_options(**search_options)
    generator = og.Generator(model, params)
    if adapter is not None:
        adapter.apply(generator)
    return generator


def prefill_logits(model, folder: Path, rows: list[list[int]], pad: int, purpose: str, adapter=None):
    """Logits at every position of right-padded `rows`, in one teacher-forced prefill (batch, width, vocab).

    `adapter` (runtime_adapters.ActiveAdapter) is made active on the generator first.
    """
    import numpy as np

    from slmtune.errors import ModelError

    width = max(len(ids) for ids in rows)
    batch = np.full((len(rows), width), pad, dtype=np.int32)
    for row, ids in enumerate(rows):
        batch[row, : len(ids)] = ids
    generator = new_generator(model, adapter, max_length=width, batch_size=len(rows), do_sample=False)
    generator.append_tokens(batch)
    logits = generator.get_output("logits")
    if logits.shape[1] != width:
        raise ModelError(
            f"{folder}: the model returns logits for the last position only (built with prune_lm_head?); "
            f"{purpose} needs every position: rebuild it with `dvc repro build_int4`"
        )
    return logits
