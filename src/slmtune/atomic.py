"""Atomic outputs: write to a temporary sibling, rename into place only when complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write `text` as UTF-8, atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def remove_stale_temporaries(final: Path) -> None:
    """Remove temporaries that a killed run (SIGKILL leaves no chance to clean up) left beside `final`."""
    if final.parent.is_dir():
        for stale in final.parent.glob(f".{final.name}.*.tmp"):
            _remove(stale)


@contextlib.contextmanager
def atomic_outputs(*finals: Path | str) -> Iterator[list[Path]]:
    """Yield temporary paths, one per final output; rename them all into place on success.

    On any error the temporaries are removed and the final paths are left untouched, so a
    crash never leaves a half-written artifact where a later stage would read it.
    """
    final_paths = [Path(p) for p in finals]
    temps: list[Path] = []
    try:
        for final in final_paths:
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(final)
            temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
            temp.chmod(0o755)
            temps.append(temp)
        yield temps
        for temp, final in zip(temps, final_paths, strict=True):
            _remove(final)
            if temp.is_dir() and not any(temp.iterdir()):
                raise RuntimeError(f"stage wrote nothing to {final}")
            os.replace(temp, final)
    finally:
        for temp in temps:
            if temp.exists():
                _remove(temp)
