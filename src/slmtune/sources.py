"""Where the labelled data comes from: a local file, a hub data set, or an Azure ML URI.

`data.source` takes one of three forms:
- a local `.jsonl`, `.json` or `.csv` file (the default, `data/raw/tone.jsonl`);
- a hub data set name (`owner/name`) at `data.revision`, split `data.hub_split`;
- an Azure ML URI: a datastore path
  `azureml://subscriptions/S/resourcegroups/G/workspaces/W/datastores/D/paths/P` or a data
  asset `azureml://subscriptions/S/resourcegroups/G/workspaces/W/data/NAME/versions/V`
  (the optional extra `slmtune[azureml]` provides azureml-fsspec).

A remote source is fetched into a local folder first (azureml-fsspec's glob does not work
under `datasets.load_dataset`), then loaded like a local file, so the same validation,
file:line messages and split apply. `prepare` records what it read in `source.json`: the
source, its revision and each file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmtune.config import DataConfig
from slmtune.errors import DataError
from slmtune.source_uris import DATA_SUFFIXES, AzureMLUri, parse_azureml_uri, source_kind

AZUREML_EXTRA = "pip install -e '.[azureml]' (azureml-fsspec; see README, 'Remote storage')"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ResolvedSource:
    """The local file to load, and what `source.json` records about where it came from."""

    file: Path
    record: dict[str, Any]


def resolve_source(data: DataConfig, cache: Path) -> ResolvedSource:
    """The local data file for `data.source`, fetching a remote source into `cache` first."""
    kind = source_kind(data.source)
    if kind == "local":
        file = Path(data.source)
        if file.is_dir():
            raise DataError(f"{data.source}: a folder; point data.source at a .jsonl, .json or .csv file in it")
        if not file.is_file():
            raise DataError(f"{data.source}: file not found; set data.source to your data file (.jsonl, .json or .csv)")
        return ResolvedSource(file, {"source": data.source, "kind": kind, "files": [_file_record(file, file.name)]})
    folder = cache / hashlib.sha256(f"{data.source}@{data.revision}".encode()).hexdigest()[:16]
    if kind == "hub":
        file = fetch_hub_dataset(data, folder)
        record = {"source": data.source, "kind": kind, "revision": data.revision, "split": data.hub_split}
        return ResolvedSource(file, {**record, "files": [_file_record(file, file.name)]})
    files = fetch_azureml(parse_azureml_uri(data.source), folder)
    record = {"source": data.source, "kind": kind, "files": [_file_record(f, f.relative_to(folder)) for f in files]}
    return ResolvedSource(_single_data_file(files, data.source), record)


def _file_record(path: Path, name: Path | str) -> dict[str, Any]:
    return {"name": str(name), "sha256": sha256(path), "bytes": path.stat().st_size}


def _single_data_file(files: list[Path], source: str) -> Path:
    if len(files) != 1:
        names = ", ".join(f.name for f in files[:5])
        raise DataError(
            f"data.source {source}: expected one .jsonl, .json or .csv file, found {len(files)} ({names}); "
            "point data.source at the file itself (…/paths/<folder>/<file>)"
        )
    return files[0]


# --- Azure ML -------------------------------------------------------------------------------


def azureml_filesystem(uri: AzureMLUri) -> Any:
    """An fsspec filesystem for the datastore or data asset (azureml-fsspec's, or any registered as 'azureml')."""
    import fsspec

    try:
        cls = fsspec.get_filesystem_class("azureml")
    except (ImportError, ValueError) as err:
        raise DataError(
            f"data.source is an azureml:// URI, which needs the optional extra: {AZUREML_EXTRA} ({err})"
        ) from None
    if cls.__module__.startswith("azureml."):
        check_azure_credentials()
    return cls(uri=uri.root)


def check_azure_credentials() -> None:
    """Fail early, with the ways to sign in, when no Azure credential can get a token."""
    try:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError, DefaultAzureCredential
    except ImportError:
        raise DataError(f"Azure ML data needs azure-identity: {AZUREML_EXTRA}") from None
    logging.getLogger("azure.identity").setLevel(logging.CRITICAL)  # the message below says it once
    try:
        DefaultAzureCredential(exclude_interactive_browser_credential=True).get_token(
            "https://management.azure.com/.default"
        )
    except (CredentialUnavailableError, ClientAuthenticationError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            "no Azure credentials to read data.source (an azureml:// URI): run `az login`, or set "
            "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a service principal, or run on Azure "
            f"with a managed identity ({first[:200]})"
        ) from None


def _remote_files(fs: Any, path: str) -> list[str]:
    """Every data file at `path` (a file, or a folder walked with `ls`; glob is not used)."""
    info = fs.info(path) if path else {"type": "directory"}
    if info.get("type") != "directory":
        return [path]
    found = []
    for entry in fs.ls(path, detail=True):
        name = entry["name"]
        if entry.get("type") == "directory":
            found += _remote_files(fs, name)
        elif Path(name).suffix.lower() in DATA_SUFFIXES:
            found.append(name)
    return sorted(found)


def fetch_azureml(uri: AzureMLUri, folder: Path) -> list[Path]:
    """Copy the data file(s) of an Azure ML URI into `folder` (replaced whole); return the local paths."""
    from tqdm import tqdm

    fs = azureml_filesystem(uri)
    try:
        remote = _remote_files(fs, uri.path)
    except FileNotFoundError:
        raise DataError(f"data.source: nothing at {uri.path!r} in {uri.root}") from None
    if not remote:
        raise DataError(f"data.source: no .jsonl, .json or .csv file under {uri.path!r} in {uri.root}")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    local = []
    for name in tqdm(remote, desc="[slmtune] fetching data", unit="file", disable=len(remote) < 2):
        relative = _relative_name(name, uri.path)
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open(name, "rb") as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        local.append(folder / relative)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return local


def _relative_name(remote: str, base: str) -> str:
    """Where a fetched file goes: its path under the URI's folder, or its own name for a single file."""
    remote, base = remote.strip("/"), base.strip("/")
    if not base:
        return remote
    marker = base + "/"
    return remote[remote.index(marker) + len(marker) :] if marker in remote else Path(remote).name


# --- Hub data sets --------------------------------------------------------------------------


def fetch_hub_dataset(data: DataConfig, folder: Path) -> Path:
    """Load `data.source` at `data.revision` with `datasets` and write its two fields as jsonl into `folder`."""
    import datasets

    try:
        table = datasets.load_dataset(data.source, revision=data.revision, split=data.hub_split)
    except Exception as err:  # datasets raises many kinds (offline, missing, bad split)
        raise DataError(
            f"data.source {data.source!r} (revision {data.revision}, split {data.hub_split!r}): the hub data set "
            f"cannot be loaded: {str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__}"
        ) from None
    missing = [name for name in (data.text_field, data.label_field) if name not in table.column_names]
    if missing:
        raise DataError(
            f"data.source {data.source!r}: no column {missing[0]!r} among {table.column_names}; "
            "set data.text_field and data.label_field"
        )
    names = _label_names(table.features[data.label_field])
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "data.jsonl"
    partial = file.with_suffix(".jsonl.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for row in table.select_columns([data.text_field, data.label_field]):
            label = row[data.label_field]
            if names is not None and isinstance(label, int) and 0 <= label < len(names):
                label = names[label]
            handle.write(json.dumps({data.text_field: row[data.text_field], data.label_field: label}) + "\n")
    partial.replace(file)
    return file


def _label_names(feature: Any) -> list[str] | None:
    """The names of a ClassLabel column (integers in the data), else None."""
    names = getattr(feature, "names", None)
    return list(names) if isinstance(names, list) else None
