"""What kind of data source a `data.source` string names, and the parts of an Azure ML URI.

Pure string checks, no fetching (that is `slmtune.sources`), so configuration validation can
use them without importing the fetchers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slmtune.errors import DataError

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
