"""Base models from an Azure ML registry (`model.source=azureml`): the URI, its pin, and the MLflow layout.

A registry model is named `azureml://registries/<registry>/models/<name>/versions/<version>` (the
form Azure ML's model catalog shows, e.g. registry `azureml`, `Phi-3-mini-4k-instruct`). Its
artifact is stored in MLflow's layout: an `MLmodel` file and the Hugging Face folder under
`data/model` (Azure ML's packaging), or `model` in newer packaging (MLflow's own transformers
flavour, which keeps the tokenizer apart in `components/tokenizer`). `prepare` downloads the
pinned version with the Azure ML SDK, finds the Hugging Face folder, and goes on as for a local
folder (safetensors only, no remote code unless allowed), recording the version and each file's
SHA-256 beside the weights.
"""

from __future__ import annotations

from pathlib import Path

from slmtune.atomic import atomic_write_json
from slmtune.errors import ModelError
from slmtune.source_uris import RegistryModel

# Where the Hugging Face folder sits inside an MLflow model artifact, in the order they are looked for.
MLFLOW_FOLDERS = ("data/model", "model")
# Where the tokenizer sits when it is not in the model folder: MLflow's transformers flavour, Azure ML's.
TOKENIZER_FOLDERS = ("components/tokenizer", "data/tokenizer")
SOURCE_RECORD = "slmtune_model_source.json"


def huggingface_folder(artifact: Path) -> Path:
    """The Hugging Face model folder inside a downloaded MLflow model artifact (`data/model` or `model`)."""
    for relative in MLFLOW_FOLDERS:
        folder = artifact / relative
        if (folder / "config.json").is_file():
            return folder
    present = sorted(str(p.relative_to(artifact)) for p in artifact.rglob("*") if p.is_dir())[:12]
    raise ModelError(
        f"{artifact}: no Hugging Face model folder in this MLflow artifact (looked for "
        f"{' and '.join(f'{name}/config.json' for name in MLFLOW_FOLDERS)}; folders here: {present or 'none'})"
    )


def tokenizer_folder(artifact: Path, model_folder: Path) -> Path:
    """The folder holding the tokenizer: the model folder, or the flavour's own (TOKENIZER_FOLDERS)."""
    from slmtune.models import TOKENIZER_FILES

    for folder in (model_folder, *(artifact / relative for relative in TOKENIZER_FOLDERS)):
        if any((folder / name).is_file() for name in TOKENIZER_FILES):
            return folder
    raise ModelError(
        f"{artifact}: no tokenizer in this MLflow artifact (looked in {model_folder.relative_to(artifact)} and "
        f"{' and '.join(TOKENIZER_FOLDERS)} for {', '.join(TOKENIZER_FILES)})"
    )


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in `folder` (top level), by name."""
    from slmtune.sources import sha256

    return {path.name: sha256(path) for path in sorted(p for p in folder.iterdir() if p.is_file())}


def record_source(model: RegistryModel, out_dir: Path) -> None:
    """SOURCE_RECORD in `out_dir`: the registry version the weights came from and each file's SHA-256."""
    record = {"source": "azureml", "uri": model.uri, "version": model.version, "sha256": file_hashes(out_dir)}
    atomic_write_json(out_dir / SOURCE_RECORD, record)


def download(model: RegistryModel, dest: Path) -> Path:
    """Download `model`'s artifact into `dest` with the Azure ML SDK; the artifact's root folder."""
    try:
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential
    except ImportError as err:  # the install command is azureml.INSTALL_HINT's; importing it would tie prepare to it
        raise ModelError(
            f"model.source=azureml needs the Azure ML SDK v2 ({err.name} is not installed): pip install -e '.[azureml]'"
        ) from None

    try:
        client = MLClient(credential=DefaultAzureCredential(), registry_name=model.registry)
        client.models.download(name=model.name, version=model.version, download_path=str(dest))
    except Exception as err:  # the SDK raises many kinds (auth, not found, network)
        raise ModelError(f"cannot download {model.uri}: {str(err).strip().splitlines()[0][:300]}") from err
    artifacts = [p for p in dest.iterdir() if p.is_dir()] or [dest]
    return artifacts[0]
