"""ONNX Runtime GenAI: imported with its telemetry off, models loaded with this machine's thread count."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path


@cache
def onnxruntime_genai():
    """The `onnxruntime_genai` module, after turning off its and ONNX Runtime's telemetry events (once)."""
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
