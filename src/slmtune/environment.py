"""The process environment every slmtune process runs in: offline, quiet, and pinned CPU kernels.

One place for these settings: stages, the command line, the bench, the Azure ML job and the
tests all take them from here. Nothing here imports torch: the kernel pin must be in the
environment before torch (and MKL, oneDNN) first load.
"""

from __future__ import annotations

import gc
import importlib
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

from slmtune.errors import HardwareError

QUIET = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
OFFLINE = {"HF_HUB_OFFLINE": "1"}

# What each library reads to cap the instruction set of the kernels it picks at run time.
# ATen (torch's own CPU kernels), MKL (BLAS under torch's matmuls: conditional numerical
# reproducibility) and oneDNN (convolutions, some matmuls); the thread count matters too
# (hw.num_threads, fixed in the CPU profile). Without a cap each picks the machine's best, so an AVX-512
# machine and an AVX2-only one train different adapters (docs/reproducibility.md).
CPU_ISA_PINS: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def quiet() -> None:
    """No telemetry from the hub client or DVC, no tokenizers fork warnings (a user's own setting wins)."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)


def go_offline() -> None:
    """Nothing may touch the network (only `prepare` of a hub model or data set downloads)."""
    quiet()
    os.environ.update(OFFLINE)


def cpu_isa_pins(isa: str | None) -> dict[str, str]:
    """The environment variables that cap every CPU kernel library at `isa` (none for null)."""
    return dict(CPU_ISA_PINS[isa]) if isa else {}


def pin_cpu_isa(isa: str | None) -> None:
    """Cap the CPU kernels at `isa` for this process and the processes it starts; before torch loads.

    The pin overrides the caller's own settings of these variables: results must not depend on them.
    """
    pins = cpu_isa_pins(isa)
    os.environ.update(pins)
    if pins and "torch" in sys.modules:
        chosen = kernel_capability()
        if chosen.lower() != pins["ATEN_CPU_CAPABILITY"]:
            raise HardwareError(
                f"hw.cpu_isa={isa}: torch was imported before the pin and computes with {chosen} kernels; "
                "start a fresh process (the stages and `slmtune` pin before importing torch)"
            )


# glibc malloc hands each freed block of 128 KiB or more back to the kernel (and trims the heap top) and maps it
# afresh on the next step: every training step paid page faults for its activations (a third of the tiny
# default's step time was system time). Keep freed memory in the process for reuse, as PyTorch's CUDA caching
# allocator does on the GPU; blocks above 1 GiB are still mapped and returned.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
KEEP_FREED_BYTES = {M_MMAP_THRESHOLD: 2**30, M_TRIM_THRESHOLD: 2**31 - 1}


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed memory instead of returning it to the kernel; False off glibc."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in KEEP_FREED_BYTES.items())


def leave_out(package: str) -> None:
    """Make `package` look absent to this process, as Python does for a `sys.modules` entry of None.

    For packages that libraries import because they are installed, not because this process computes
    with them: peft imports bitsandbytes (whose import compiles kernels with torch.compile, about 0.9 s),
    transformers imports scipy.optimize for its object-detection losses (about 0.7 s).
    """
    if package not in sys.modules:
        sys.modules[package] = None


def set_up_process(
    cpu_isa: str | None, num_threads: int, offline: bool = True, bitsandbytes: bool = False, scipy: bool = True
) -> None:
    """What a process of the pipeline does before its work: keep freed memory for reuse, pin the kernels
    (`hw.cpu_isa`), set the thread count (`hw.num_threads`), go offline unless a download is due, and
    leave bitsandbytes and scipy out unless it computes with them (QLoRA; eval's metrics). Before torch loads."""
    keep_freed_memory()
    if not bitsandbytes:
        leave_out("bitsandbytes")
    if not scipy:
        leave_out("scipy")
    pin_cpu_isa(cpu_isa)
    configure_threads(num_threads)
    if offline:
        go_offline()
    else:
        quiet()


def kernel_capability() -> str:
    """The instruction set torch's own CPU kernels run with here (AVX2, AVX512, DEFAULT, ...)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def cpu_vendor() -> str:
    """The CPU's vendor (GenuineIntel, AuthenticAMD, ...) from /proc/cpuinfo; the machine type elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "vendor_id":
                return value.strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def kernel_signature() -> str:
    """What decides how this machine's CPU kernels round besides params: the vendor, ATen's instruction set
    and MKL's code branch. MKL takes vendor-specific paths under every MKL_CBWR branch but COMPATIBLE,
    so two machines reproduce each other's adapters bit for bit only when their signatures are equal."""
    return f"{cpu_vendor()} ATen={kernel_capability()} MKL_CBWR={os.environ.get('MKL_CBWR', 'AUTO')}"


def child_env(base: Mapping[str, str] | None = None, offline: bool = True) -> dict[str, str]:
    """An environment for a process slmtune starts: `base` (default: this one's), quiet and offline."""
    env = {**QUIET, **(os.environ if base is None else base)}
    return {**env, **OFFLINE} if offline else env


def import_without_collector(*modules: str) -> None:
    """Import `modules` (those not imported yet) with Python's cycle collector paused, then freeze what
    the imports made.

    Importing torch, transformers, trl and the ONNX builder makes about a million long-lived objects
    (modules, classes, functions), and each full pass of the collector rescans them all: on the tiny
    default, 9 such passes were 0.9 s of train_lora's start and 6 were 0.35 s of build_int4's. Frozen
    (`gc.freeze`), they are skipped by every later pass; the collector runs as before for the work.
    Garbage made before the imports is collected first, not frozen with them.
    """
    missing = [module for module in modules if module not in sys.modules]
    if not missing:
        return
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for module in missing:
            importlib.import_module(module)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def configure_threads(num_threads: int) -> int:
    """Use `num_threads` intra-op threads in torch (`hw.num_threads`; 0: the cores, shared by local processes)."""
    import_without_collector("torch")
    import torch

    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = num_threads or max(1, (os.cpu_count() or 1) // local_processes)
    torch.set_num_threads(threads)
    return threads
