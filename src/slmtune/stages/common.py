"""What every stage script shares: argument parsing, offline mode, error reporting."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from slmtune.errors import SlmtuneError

RESTORE_HINT = "DVC removed this stage's outputs before running it; `dvc checkout` restores the last good ones."


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the `--params` option every stage takes."""
    parse = argparse.ArgumentParser(description=description)
    parse.add_argument("--params", default="params.yaml", help="composed configuration (default: params.yaml)")
    return parse


def go_offline() -> None:
    """Nothing but `prepare` for a hub model may touch the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run(name: str, body: Callable[[], None]) -> None:
    """Run a stage body; turn the project's errors into one clear line and exit status 1."""
    start = time.perf_counter()
    print(f"[slmtune] stage {name}: start", flush=True)
    try:
        body()
    except SlmtuneError as err:
        print(f"[slmtune] stage {name} failed: {err}\n[slmtune] {RESTORE_HINT}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"[slmtune] stage {name}: done in {time.perf_counter() - start:.1f}s", flush=True)
