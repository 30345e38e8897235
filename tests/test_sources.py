"""data.source: local files, hub data sets and Azure ML URIs, fetched first and then loaded as a local file.

Azure cannot be reached here: the Azure ML tests serve local files through an fsspec
filesystem registered under the same protocol ('azureml') and constructor (`uri=`) as
azureml-fsspec's, so the project's fetch-then-load code runs unchanged.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import _registry

from helpers import ROOT, params_file, tool_env
from slmtune.config import compose
from slmtune.errors import ConfigError, DataError
from slmtune.source_uris import parse_azureml_uri, source_kind
from slmtune.sources import check_azure_credentials, fetch_hub_dataset, sha256
from slmtune.stages.prepare import prepare

WORKSPACE = "azureml://subscriptions/0000-sub/resourcegroups/rg-ml/workspaces/ws-tone"
DATASTORE = f"{WORKSPACE}/datastores/workspaceblobstore/paths/tone/tone.jsonl"
DATA_ASSET = f"{WORKSPACE}/data/tone-phrases/versions/3"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalAzureMLFileSystem(DirFileSystem):
    """Serves `<root>/<datastore or data asset name-version>/` for an azureml:// URI, like azureml-fsspec."""

    protocol = "azureml"
    cachable = False  # a fresh instance per test: each serves its own folder
    served: Path = Path()

    def __init__(self, uri: str, **kwargs):
        parsed = parse_azureml_uri(uri + ("/paths/x" if "/datastores/" in uri else ""))
        folder = parsed.datastore if parsed.datastore else f"{parsed.name}-{parsed.version}"
        super().__init__(path=str(self.served / folder), fs=LocalFileSystem(), **kwargs)


@pytest.fixture
def azureml_served(tmp_path, monkeypatch):
    """Register the local 'azureml' filesystem for this test; return the folder it serves."""
    served = tmp_path / "azure"
    monkeypatch.setattr(LocalAzureMLFileSystem, "served", served)
    fsspec.register_implementation("azureml", LocalAzureMLFileSystem, clobber=True)
    yield served
    _registry.pop("azureml", None)


def tone_lines(count: int = 12) -> str:
    labels = ["sad", "joy", "fear", "surprise"]
    rows = [{"phrase": f"phrase number {i} about {labels[i % 4]}", "tone": labels[i % 4]} for i in range(count * 4)]
    return "".join(json.dumps(row) + "\n" for row in rows)


def run_prepare(tmp_path: Path, source: str, **data) -> Path:
    overrides = [f"data.source={source}"] + [f"data.{key}={value}" for key, value in data.items()]
    out = tmp_path / "prepared"
    prepare(compose(overrides), out, tmp_path / "base", cache=tmp_path / "cache")
    return out


def test_a_datastore_uri_is_split_into_its_parts():
    uri = parse_azureml_uri(DATASTORE)
    assert (uri.subscription, uri.resource_group, uri.workspace) == ("0000-sub", "rg-ml", "ws-tone")
    assert (uri.datastore, uri.path) == ("workspaceblobstore", "tone/tone.jsonl")
    assert uri.root == f"{WORKSPACE}/datastores/workspaceblobstore"


def test_a_data_asset_uri_is_split_into_its_parts():
    uri = parse_azureml_uri(DATA_ASSET)
    assert (uri.name, uri.version, uri.datastore, uri.path) == ("tone-phrases", "3", None, "")
    assert uri.root == DATA_ASSET


@pytest.mark.parametrize(
    "uri",
    [
        "azureml://subscriptions/s/resourcegroups/g/workspaces/w/datastores/d",  # no paths/...
        "azureml://subscriptions/s/workspaces/w/data/x/versions/1",  # no resource group
        "azureml://datastores/d/paths/p.jsonl",  # short form: needs a workspace context
    ],
)
def test_a_malformed_azureml_uri_shows_the_accepted_forms(uri):
    with pytest.raises(DataError, match="datastores/<store>/paths/"):
        parse_azureml_uri(uri)


@pytest.mark.parametrize(
    ("source", "kind"),
    [("data/raw/tone.jsonl", "local"), ("x/y.CSV", "local"), (DATASTORE, "azureml"), ("dair-ai/emotion", "hub")],
)
def test_the_source_kind_follows_from_its_shape(source, kind):
    assert source_kind(source) == kind


def test_a_hub_data_set_needs_a_pinned_revision():
    with pytest.raises(ConfigError, match=re.escape("'data.revision' is required")):
        compose(["data.source=dair-ai/emotion"])
    with pytest.raises(ConfigError, match=re.escape("'data.revision' is 'main', a branch or tag")):
        compose(["data.source=dair-ai/emotion", "data.revision=main"])
    assert compose(["data.source=dair-ai/emotion", f"data.revision={COMMIT}"]).data.revision == COMMIT


def test_prepare_fetches_an_azureml_file_then_loads_it_like_a_local_one(tmp_path, azureml_served):
    remote = azureml_served / "workspaceblobstore/tone/tone.jsonl"
    remote.parent.mkdir(parents=True)
    remote.write_text(tone_lines())
    out = run_prepare(tmp_path, DATASTORE)
    record = json.loads((out / "source.json").read_text())
    assert record["source"] == DATASTORE and record["kind"] == "azureml"
    assert record["files"] == [{"name": "tone.jsonl", "sha256": sha256(remote), "bytes": remote.stat().st_size}]
    assert (out / "source/tone.jsonl").read_bytes() == remote.read_bytes()
    rows = sum(len((out / f"{name}.jsonl").read_text().splitlines()) for name in ("train", "val", "test"))
    assert rows == 48


def test_prepare_reads_a_data_asset_folder_holding_one_file(tmp_path, azureml_served):
    (azureml_served / "tone-phrases-3/nested").mkdir(parents=True)
    rows = "".join(f"line {i} of {t},{t}\n" for i in range(12) for t in ("sad", "joy", "fear", "surprise"))
    (azureml_served / "tone-phrases-3/nested/tone.csv").write_text("phrase,tone\n" + rows)
    (azureml_served / "tone-phrases-3/README.txt").write_text("not data")
    out = run_prepare(tmp_path, DATA_ASSET)
    assert [f["name"] for f in json.loads((out / "source.json").read_text())["files"]] == ["nested/tone.csv"]


def test_a_fetched_file_with_a_bad_row_is_named_in_the_error(tmp_path, azureml_served):
    remote = azureml_served / "workspaceblobstore/tone/tone.jsonl"
    remote.parent.mkdir(parents=True)
    remote.write_text(tone_lines() + '{"phrase": "odd one", "tone": "anger"}\n')
    with pytest.raises(DataError, match=r"cache/[0-9a-f]{16}/tone\.jsonl:49: unknown label 'anger'"):
        run_prepare(tmp_path, DATASTORE)
    assert not (tmp_path / "prepared").exists()


def test_a_folder_with_two_data_files_is_refused(tmp_path, azureml_served):
    folder = azureml_served / "workspaceblobstore/tone"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(tone_lines())
    (folder / "b.jsonl").write_text(tone_lines())
    with pytest.raises(DataError, match=re.escape("expected one .jsonl, .json or .csv file, found 2")):
        run_prepare(tmp_path, f"{WORKSPACE}/datastores/workspaceblobstore/paths/tone")


def test_a_missing_remote_path_is_named(tmp_path, azureml_served):
    (azureml_served / "workspaceblobstore").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape("nothing at 'tone/tone.jsonl'")):
        run_prepare(tmp_path, DATASTORE)


def test_an_azureml_source_without_the_extra_fails_clearly(tmp_path):
    params = tmp_path / "params.yaml"
    params_file(params, [f"data.source={DATASTORE}"])
    result = subprocess.run(
        [sys.executable, "-m", "slmtune.stages.prepare", "--params", str(params)],
        cwd=tmp_path,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "needs the optional extra: pip install -e '.[azureml]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_missing_azure_credentials_give_the_ways_to_sign_in(monkeypatch, tmp_path):
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no Azure CLI or token cache profile
    monkeypatch.setenv("PATH", "/nonexistent")  # no `az`, `azd` or `pwsh`
    with pytest.raises(DataError, match=r"no Azure credentials .* `az login`"):
        check_azure_credentials()


def test_a_hub_data_set_is_written_as_jsonl_with_label_names(tmp_path):
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["sad", "joy", "fear", "surprise"])}
    )
    table = datasets.Dataset.from_dict(
        {"text": [f"phrase {i}" for i in range(8)], "label": [i % 4 for i in range(8)]}, features=features
    )
    hub_folder = tmp_path / "hub-copy"
    (hub_folder / "data").mkdir(parents=True)
    table.to_parquet(str(hub_folder / "data/train-00000-of-00001.parquet"))
    data = compose([f"data.source={hub_folder}", "data.text_field=text", "data.label_field=label"]).data
    file = fetch_hub_dataset(data, tmp_path / "fetched")
    rows = [json.loads(line) for line in file.read_text().splitlines()]
    assert rows[:2] == [{"text": "phrase 0", "label": "sad"}, {"text": "phrase 1", "label": "joy"}]


def test_an_unreachable_hub_data_set_is_a_clear_error(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # The libraries read the variables once, at import: another test may have imported them already.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    data = compose(["data.source=slmtune-tests/no-such-data", f"data.revision={COMMIT}"]).data
    with pytest.raises(DataError, match=r"'slmtune-tests/no-such-data' \(revision 0123.*cannot be loaded"):
        fetch_hub_dataset(data, tmp_path / "fetched")


def test_a_local_source_is_recorded_with_its_hash(tmp_path):
    source = tmp_path / "tone.jsonl"
    source.write_text(tone_lines())
    out = run_prepare(tmp_path, str(source))
    record = json.loads((out / "source.json").read_text())
    assert record == {
        "source": str(source),
        "kind": "local",
        "files": [{"name": "tone.jsonl", "sha256": sha256(source), "bytes": source.stat().st_size}],
    }
    assert not (out / "source").exists()
    assert ROOT.is_dir()
