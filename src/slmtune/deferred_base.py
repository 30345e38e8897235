"""A base model prepared in the Azure ML job, not here: `hw=azureml` with a hub or registry model.

Under `hw.launcher=azureml`, `prepare` downloads nothing: it checks the data and the model's pin,
writes a reference to the model into `models/base` (REFERENCE) and the data file with its record
into `data/prepared` (DEFERRED). The job then runs `prepare` for real where it trains: the hub
model at its pinned revision, or the registry asset that Azure ML hands the job as an input. The
weights are downloaded once, next to the GPUs, never to the machine that submits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from slmtune.atomic import atomic_write_json
from slmtune.config import ModelConfig, Params
from slmtune.errors import DataError
from slmtune.models import MODEL_REFERENCE as REFERENCE
from slmtune.sources import ResolvedSource

DEFERRED = "deferred.json"


def is_deferred(params: Params) -> bool:
    """True when the model download belongs to the Azure ML job (a hub or registry model under hw=azureml)."""
    return params.hw.launcher == "azureml" and params.model.source in ("hub", "azureml")


def model_reference(model: ModelConfig) -> dict[str, Any]:
    """What the job downloads: a hub id at its revision, or a registry asset (pins were checked by validation)."""
    if model.source == "hub":
        return {"source": "hub", "hub_id": model.hub_id, "revision": model.revision}
    from slmtune.source_uris import configured_registry_model

    registry = configured_registry_model(model)
    return {
        "source": "azureml",
        "uri": registry.uri,
        "registry": registry.registry,
        "name": registry.name,
        "version": registry.version,
    }


def write_deferred(model: ModelConfig, source: ResolvedSource, data_dir: Path, model_dir: Path) -> None:
    """The model reference in `model_dir`; the data file, its record and DEFERRED in `data_dir`."""
    atomic_write_json(model_dir / REFERENCE, model_reference(model))
    (data_dir / "source").mkdir()
    shutil.copy2(source.file, data_dir / "source" / source.file.name)
    atomic_write_json(data_dir / "source.json", source.record)
    deferred = {"prepared_by": "the Azure ML job (hw=azureml)", "data_file": f"source/{source.file.name}"}
    atomic_write_json(data_dir / DEFERRED, deferred)


def registry_asset(reference: dict[str, Any]) -> str | None:
    """The registry model the job takes as an input (None for a hub model, which the job downloads itself)."""
    return reference["uri"] if reference["source"] == "azureml" else None


def deferred_source(folder: Path) -> ResolvedSource:
    """The data file and record a deferred `prepare` wrote, read back in the job."""
    marker = folder / DEFERRED
    if not marker.is_file():
        raise DataError(f"{folder}: no {DEFERRED}; this folder was not written by `prepare` under hw=azureml")
    file = folder / json.loads(marker.read_text(encoding="utf-8"))["data_file"]
    record = json.loads((folder / "source.json").read_text(encoding="utf-8"))
    return ResolvedSource(file, record)
