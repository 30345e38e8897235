"""Multi-process training: start under torchrun when the profile asks for it, know who writes."""

from __future__ import annotations

import os
import shutil
import sys

from slmtune.config import HwConfig
from slmtune.errors import HardwareError


def under_launcher() -> bool:
    """True inside a process that torchrun (or accelerate launch) started."""
    return "LOCAL_RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Only the main process writes outputs."""
    return rank() == 0


def process_count(hw: HwConfig) -> int:
    """Processes to start: `hw.num_processes`, or one per local GPU when it is 0."""
    if hw.num_processes > 0:
        return hw.num_processes
    import torch

    return max(1, torch.cuda.device_count()) if hw.device == "cuda" else 1


def torchrun_command(hw: HwConfig, module: str, argv: list[str]) -> list[str]:
    """The torchrun command line that runs `python -m module argv` in every process."""
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.path.exists(torchrun):
        raise HardwareError("hw.launcher=torchrun needs the `torchrun` command (it comes with torch)")
    return [torchrun, "--standalone", f"--nproc_per_node={process_count(hw)}", "-m", module, *argv]


def relaunch_under_torchrun(hw: HwConfig, module: str, argv: list[str]) -> None:
    """Replace this process with torchrun running the same stage in every process."""
    command = torchrun_command(hw, module, argv)
    print("[slmtune] launching:", " ".join(command[1:]), flush=True)
    sys.stdout.flush()
    os.execv(command[0], command)
