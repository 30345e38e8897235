"""Hardware profiles: check the machine before any work starts."""

from __future__ import annotations

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
