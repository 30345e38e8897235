"""Silence the libraries' messages that ask a user to do something they need not do."""

from __future__ import annotations

import logging
import warnings


def quiet_library_noise() -> None:
    """Hide known, harmless messages of the pinned stack.

    - bitsandbytes on a CPU with AVX-512 BF16 tries an optional hub kernel (`pip install kernels`,
      a download) and falls back to its own 4-bit kernel; the fallback is what runs offline.
    - peft reads transformers' `is_gradient_checkpointing`, which warns that it is deprecated.
    - the Azure ML SDK, dumping a pipeline job, warns that six of its own schema classes are experimental.
    - ONNX Runtime's int4 quantizer logs each node it quantizes or skips at INFO (its module sets the root
      logger to INFO when the builder imports it): two lines a MatMul, hundreds in a Phi-3-mini build.
    """
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
