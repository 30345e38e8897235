"""A set of experiments becomes one LoRA base plus an ONNX Runtime adapter file per experiment.

Each experiment (any revision DVC knows: an experiment's name, a branch, a commit) must have been
trained on the workspace's `models/base`: DVC's own record of that output (its md5 in the
revision's dvc.lock) is compared before anything is fetched, so an experiment on another base is
refused by name. Its `models/adapter` is then read from DVC's cache at that revision and exported
against the workspace's base (`runtime_adapters.export_adapter`, which also refuses DoRA and
`modules_to_save` adapters), as OUT/NAME.onnx_adapter with its card.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from slmtune.errors import ModelError

BASE, ADAPTER = "models/base", "models/adapter"


def output_md5(lock_text: str, path: str, where: str) -> str:
    """The md5 dvc.lock records for output `path` (a ModelError naming `where` if it has none)."""
    lock = yaml.safe_load(lock_text) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == path:
                return str(out["md5"])
    raise ModelError(f"{where}: dvc.lock records no {path}; run the pipeline there first (`dvc exp run`)")


def export_experiments(names: list[str], out: Path, repo: Path = Path(".")) -> list[Path]:
    """OUT/NAME.onnx_adapter (and its card) for each experiment in `names`; all checked before any is written."""
    from dvc.api import DVCFileSystem

    from slmtune.runtime_adapters import export_adapter

    if not names:
        raise ModelError("name at least one experiment (or other revision) whose adapter to export")
    workspace = output_md5((repo / "dvc.lock").read_text(encoding="utf-8"), BASE, f"{repo / 'dvc.lock'}")
    systems = {}
    for name in names:
        try:
            systems[name] = DVCFileSystem(str(repo), rev=name)
            lock = systems[name].read_text("dvc.lock")
        except Exception as err:  # DVC raises several kinds for an unknown revision
            raise ModelError(f"experiment {name!r}: DVC cannot read it ({str(err).strip()[:200]})") from err
        theirs = output_md5(lock, BASE, f"experiment {name!r}")
        if theirs != workspace:
            raise ModelError(
                f"experiment {name!r} was trained on another base ({BASE} md5 {theirs[:12]}, the workspace's "
                f"{workspace[:12]}): its adapter cannot run on this LoRA base; train it on this base"
            )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="slmtune-adapters-") as tmp:
        for name, system in systems.items():
            folder = Path(tmp) / name
            system.get(ADAPTER, str(folder), recursive=True)
            written.append(out / f"{name}.onnx_adapter")
            export_adapter(folder, repo / BASE, written[-1])
    return written
