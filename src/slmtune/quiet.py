"""Silence the libraries' messages that ask a user to do something they need not do."""

from __future__ import annotations

import logging
import warnings


def quiet_library_noise() -> None:
    """Hide two known, harmless messages of the pinned stack.

    - bitsandbytes on a CPU with AVX-512 BF16 tries an optional hub kernel (`pip install kernels`,
      a download) and falls back to its own 4-bit kernel; the fallback is what runs offline.
    - peft reads transformers' `is_gradient_checkpointing`, which warns that it is deprecated.
    - the Azure ML SDK, dumping a pipeline job, warns that six of its own schema classes are experimental.
    """
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
