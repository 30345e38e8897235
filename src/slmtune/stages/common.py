"""What every stage script shares: argument parsing, reading params, the environment, error reporting."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from slmtune.config import Params, load_params
from slmtune.environment import set_up_process
from slmtune.errors import add_debug_flag, exit_on_failure
from slmtune.quiet import quiet_library_noise

RESTORE_HINT = "DVC removed this stage's outputs before running it; `dvc checkout` restores the last good ones."


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the `--params` and `--debug` options every stage takes."""
    parse = argparse.ArgumentParser(description=description)
    parse.add_argument("--params", default="params.yaml", help="composed configuration (default: params.yaml)")
    add_debug_flag(parse)
    return parse


def stage_params(
    path: str, offline: bool = True, bitsandbytes: Callable[[Params], bool] | None = None, scipy: bool = False
) -> Params:
    """Read params.yaml and set up this process for them: kernels pinned, thread count set, offline unless
    a download is due (both kernels and threads decide how floating-point sums round), bitsandbytes
    left out unless `bitsandbytes(params)` says the stage computes with it, scipy unless `scipy`."""
    params = load_params(path)
    uses_bitsandbytes = bitsandbytes is not None and bitsandbytes(params)
    set_up_process(params.hw.cpu_isa, params.hw.num_threads, offline, bitsandbytes=uses_bitsandbytes, scipy=scipy)
    return params


def run(name: str, body: Callable[[], None]) -> None:
    """Run a stage body; report any failure as a clear message (traceback only in debug mode), exit 1."""
    start = time.perf_counter()
    quiet_library_noise()
    print(f"[slmtune] stage {name}: start", flush=True)
    exit_on_failure(body, f"[slmtune] stage {name} failed: ", "[slmtune] ", closing=(RESTORE_HINT,))
    print(f"[slmtune] stage {name}: done in {time.perf_counter() - start:.1f}s", flush=True)
