"""What every stage script shares: argument parsing, offline mode, error reporting."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from slmtune.errors import add_debug_flag, failure_lines, print_traceback_if_debug
from slmtune.quiet import quiet_library_noise

RESTORE_HINT = "DVC removed this stage's outputs before running it; `dvc checkout` restores the last good ones."


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the `--params` and `--debug` options every stage takes."""
    parse = argparse.ArgumentParser(description=description)
    parse.add_argument("--params", default="params.yaml", help="composed configuration (default: params.yaml)")
    add_debug_flag(parse)
    return parse


def go_offline() -> None:
    """Nothing but `prepare` for a hub model may touch the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run(name: str, body: Callable[[], None]) -> None:
    """Run a stage body; report any failure as a clear message (traceback only in debug mode), exit 1."""
    start = time.perf_counter()
    quiet_library_noise()
    print(f"[slmtune] stage {name}: start", flush=True)
    try:
        body()
    except Exception as err:
        sys.stdout.flush()
        print_traceback_if_debug(err)
        lines = failure_lines(err)
        report = [f"[slmtune] stage {name} failed: {lines[0]}", *(f"[slmtune] {line}" for line in lines[1:])]
        print("\n".join([*report, f"[slmtune] {RESTORE_HINT}"]), file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"[slmtune] stage {name}: done in {time.perf_counter() - start:.1f}s", flush=True)
