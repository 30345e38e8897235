"""ONNX Runtime GenAI, imported with its telemetry off (ONNX Runtime sends usage events on Windows)."""

from __future__ import annotations

from functools import cache


@cache
def onnxruntime_genai():
    """The `onnxruntime_genai` module, after turning off its and ONNX Runtime's telemetry events (once)."""
    import onnxruntime
    import onnxruntime_genai

    onnxruntime.disable_telemetry_events()
    onnxruntime_genai.disable_telemetry_events()
    return onnxruntime_genai
