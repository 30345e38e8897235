"""Hardware profiles: check the machine before any work starts, and set thread counts."""

from __future__ import annotations

import os

from slmtune.config import HwConfig
from slmtune.errors import HardwareError


def check_machine(hw: HwConfig) -> None:
    """Raise HardwareError with a hint when the machine cannot run profile `hw`."""
    if hw.launcher == "azureml":  # the GPU is in the cloud; check the submission settings instead
        from slmtune.azureml import check_ready

        check_ready(hw)
        return
    import torch

    if hw.device != "cuda":
        return
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise HardwareError(
            f"hw={hw.name} needs CUDA, but CUDA is not available on this machine "
            f"(torch {torch.__version__}, {build}). Pick the CPU profile instead: "
            "`make train HW=cpu` or `dvc exp run -S hw=cpu`."
        )
    count = torch.cuda.device_count()
    if count < hw.min_gpus:
        raise HardwareError(f"hw={hw.name} needs {hw.min_gpus} GPUs; this machine has {count}.")
    if hw.dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise HardwareError(
            f"hw={hw.name} trains in bfloat16, which this GPU does not support; override with `-S hw.dtype=float16`."
        )


def configure_threads(hw: HwConfig) -> int:
    """Use `hw.num_threads` intra-op threads in torch (0 means every core); return the count."""
    import torch

    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = hw.num_threads or max(1, (os.cpu_count() or 1) // local_processes)
    torch.set_num_threads(threads)
    return threads
