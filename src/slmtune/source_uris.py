"""What kind of data source a `data.source` string names, the parts of an Azure ML URI, and a registry model's.

Pure string checks, no fetching (that is `slmtune.sources`), so configuration validation can
use them without importing the fetchers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slmtune.errors import DataError, ModelError

if TYPE_CHECKING:
    from slmtune.config import ModelConfig

DATA_SUFFIXES = (".jsonl", ".json", ".csv")
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_WORKSPACE = (
    r"azureml://subscriptions/(?P<subscription>[^/]+)/resourcegroups/(?P<resource_group>[^/]+)"
    r"/workspaces/(?P<workspace>[^/]+)"
)
DATASTORE_URI = re.compile(_WORKSPACE + r"/datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)", re.IGNORECASE)
DATA_ASSET_URI = re.compile(
    _WORKSPACE + r"/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/?(?P<path>.*)", re.IGNORECASE
)


@dataclass(frozen=True)
class AzureMLUri:
    """An Azure ML datastore path or data asset version, split into its parts."""

    subscription: str
    resource_group: str
    workspace: str
    datastore: str | None = None
    name: str | None = None
    version: str | None = None
    path: str = ""

    @property
    def root(self) -> str:
        """The URI of the datastore or data asset, without the path inside it."""
        workspace = (
            f"azureml://subscriptions/{self.subscription}/resourcegroups/{self.resource_group}"
            f"/workspaces/{self.workspace}"
        )
        if self.datastore is not None:
            return f"{workspace}/datastores/{self.datastore}"
        return f"{workspace}/data/{self.name}/versions/{self.version}"


def parse_azureml_uri(uri: str) -> AzureMLUri:
    """Split an `azureml://` URI; a malformed one is refused with the two accepted forms."""
    for pattern in (DATASTORE_URI, DATA_ASSET_URI):
        match = pattern.fullmatch(uri.strip())
        if match:
            parts = match.groupdict()
            return AzureMLUri(**{**parts, "path": parts["path"].strip("/")})
    raise DataError(
        f"data.source {uri!r} is not an Azure ML URI this project reads; use "
        "azureml://subscriptions/<id>/resourcegroups/<group>/workspaces/<ws>/datastores/<store>/paths/<file-or-folder> "
        "or azureml://subscriptions/<id>/resourcegroups/<group>/workspaces/<ws>/data/<name>/versions/<version>"
    )


def source_kind(source: str) -> str:
    """'local', 'azureml' or 'hub', from the shape of `data.source`."""
    if source.startswith("azureml://"):
        return "azureml"
    if Path(source).suffix.lower() in DATA_SUFFIXES or Path(source).exists():
        return "local"
    if HUB_NAME.fullmatch(source):
        return "hub"
    raise DataError(
        f"data.source {source!r} is neither a local .jsonl/.json/.csv file, a hub data set name (owner/name) "
        "nor an azureml:// URI"
    )


SCHEME = "azureml://registries/<registry>/models/<name>/versions/<version>"
REGISTRY_URI = re.compile(
    r"azureml://registries/(?P<registry>[\w.-]+)/models/(?P<name>[\w.-]+)/versions/(?P<version>[\w.-]+)/?",
    re.IGNORECASE,
)
LABEL_URI = re.compile(r"azureml://registries/[\w.-]+/models/[\w.-]+/labels/(?P<label>[\w.-]+)/?", re.IGNORECASE)
FLOATING = {"latest", "default"}


@dataclass(frozen=True)
class RegistryModel:
    """One version of a model in an Azure ML registry."""

    registry: str
    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"azureml://registries/{self.registry}/models/{self.name}/versions/{self.version}"


REGISTRY_KEYS = ("registry_name", "registry_model", "registry_version")


def configured_registry_model(model: ModelConfig) -> RegistryModel:
    """The registry model a model config names: `model.uri`, or the registry, name and version as three keys."""
    keys = {key: getattr(model, key) for key in REGISTRY_KEYS}
    given = [f"model.{key}" for key, value in keys.items() if value not in (None, "")]
    missing = [f"model.{key}" for key in REGISTRY_KEYS if f"model.{key}" not in given]
    uri = model.uri
    if uri and given:
        raise ModelError(f"model.uri and {', '.join(given)} are both set; name the registry model one way")
    if given and missing:
        raise ModelError(f"{', '.join(given)} set without {', '.join(missing)}; give all three (or model.uri)")
    if given:
        uri = "azureml://registries/{registry_name}/models/{registry_model}/versions/{registry_version}".format(**keys)
    if not uri:
        raise ModelError(
            "model.source=azureml needs 'model.uri' (azureml://registries/<r>/models/<n>/versions/<v>) or "
            "model.registry_name, model.registry_model and model.registry_version"
        )
    return parse_registry_model(str(uri), model.allow_floating_revision)


def parse_registry_model(uri: str, allow_floating: bool = False) -> RegistryModel:
    """The registry, name and version of `uri`; a malformed URI or an unpinned version is refused."""
    text = uri.strip()
    label = LABEL_URI.fullmatch(text)
    match = REGISTRY_URI.fullmatch(text)
    if label is None and match is None:
        raise ModelError(f"model.uri {uri!r} is not an Azure ML registry model; use {SCHEME}")
    version = label.group("label") if label else match.group("version")
    if (label or version.lower() in FLOATING) and not allow_floating:
        raise ModelError(
            f"model.uri {uri!r} names {version!r}, which moves when a new version is registered; pin a version "
            "number (…/versions/<N>), or set model.allow_floating_revision=true"
        )
    if label:
        raise ModelError(f"model.uri {uri!r}: labels are not read here; name the version ({SCHEME})")
    return RegistryModel(match.group("registry"), match.group("name"), version)
