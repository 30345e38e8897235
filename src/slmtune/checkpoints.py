"""Resumable training: checkpoints in a cache folder keyed by everything the run depends on.

DVC removes a stage's outputs before it runs, so checkpoints live outside them, in
`.slmtune-cache/train_lora/<key>/`. The key hashes the params the stage reads and the
contents of its inputs, so a killed run resumes only into the same run, never another.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from slmtune.config import Params

CACHE_ROOT = Path(".slmtune-cache/train_lora")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
CHECKPOINT = re.compile(r"checkpoint-(\d+)")  # the Trainer's folder for step N


def _file_digest(path: Path, content: bool) -> str:
    if not content:  # large weight files: name and size are enough to tell models apart
        return f"{path.name}:{path.stat().st_size}"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{path.name}:{digest.hexdigest()}"


def run_key(params: Params, data_dir: Path, base_dir: Path) -> str:
    """A short hash of the training params and the stage's inputs."""
    model = asdict(params.model)
    relevant = {
        "seed": params.seed,
        "hw": asdict(params.hw),
        "train": asdict(params.train),
        "model": {k: model[k] for k in ("lora_target_modules", "modules_to_save", "max_length")},
    }
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode())
    for folder in (data_dir, base_dir):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(_file_digest(path, content=path.suffix not in WEIGHT_SUFFIXES).encode())
    return digest.hexdigest()[:16]


def checkpoint_dir(params: Params, data_dir: Path, base_dir: Path, root: Path = CACHE_ROOT) -> Path:
    """Where this run keeps its checkpoints."""
    return root / run_key(params, data_dir, base_dir)


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete `checkpoint-N` folder, or None; newer, half-written ones are removed.

    The Trainer writes `trainer_state.json` last, in one write: a checkpoint whose state parses holds
    every file before it whole. A process killed while saving leaves a folder without it, or with a
    truncated one, which transformers' own `get_last_checkpoint` would still pick.
    """
    if not folder.is_dir():
        return None
    steps = {int(m[1]): path for path in folder.iterdir() if path.is_dir() and (m := CHECKPOINT.fullmatch(path.name))}
    for path in (steps[step] for step in sorted(steps, reverse=True)):
        if _state_is_whole(path / "trainer_state.json"):
            return str(path)
        print(f"[slmtune] {path} was cut short while it was saved: removing it", flush=True)
        shutil.rmtree(path, ignore_errors=True)
    return None


def _state_is_whole(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def discard(folder: Path) -> None:
    """Remove a finished run's checkpoints."""
    shutil.rmtree(folder, ignore_errors=True)
