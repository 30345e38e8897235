"""Base models from an Azure ML registry: the URI and its pin, the MLflow layout, and what `prepare` keeps.

Azure is out of reach here: the download itself is the SDK's (`MLClient.models.download`). Everything
on our side of it runs for real: MLflow artifacts in both layouts are written as MLflow documents
them (an `MLmodel` file, the Hugging Face folder under `data/model` or `model`), and `prepare` runs
on such an artifact handed over where the SDK would have put it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slmtune.config import compose, write_params
from slmtune.errors import ConfigError, ModelError
from slmtune.registry_models import SOURCE_RECORD, huggingface_folder
from slmtune.source_uris import parse_registry_model
from slmtune.stages.prepare import prepare

PHI3 = "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7"
REGISTRY_KEYS = [
    "model.registry_name=azureml",
    "model.registry_model=Phi-3-mini-4k-instruct",
    "model.registry_version=7",
]
MLMODEL = "flavors:\n  transformers:\n    transformers_version: 4.41.2\n    task: text-generation\n"


def test_a_registry_uri_gives_its_registry_name_and_pinned_version():
    model = parse_registry_model(PHI3)
    assert (model.registry, model.name, model.version) == ("azureml", "Phi-3-mini-4k-instruct", "7")
    assert model.uri == PHI3
    assert parse_registry_model(PHI3 + "/").uri == PHI3


@pytest.mark.parametrize(
    "uri",
    [
        "azureml://registries/azureml/models/Phi-3-mini-4k-instruct",
        "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/",
        "https://ml.azure.com/registries/azureml/models/Phi-3-mini-4k-instruct/version/7",
        "azureml://subscriptions/s/resourcegroups/g/workspaces/w/models/phi/versions/1",
        "microsoft/Phi-3-mini-4k-instruct",
    ],
)
def test_a_malformed_registry_uri_is_refused_with_the_form_to_use(uri):
    with pytest.raises(ModelError, match=r"azureml://registries/<registry>/models/<name>/versions/<version>"):
        parse_registry_model(uri)


@pytest.mark.parametrize("tail", ["versions/latest", "labels/latest"])
def test_a_floating_version_is_refused_unless_allowed(tail):
    uri = f"azureml://registries/azureml/models/Phi-3-mini-4k-instruct/{tail}"
    with pytest.raises(ModelError, match=r"pin a version number.*model\.allow_floating_revision=true"):
        parse_registry_model(uri)
    if tail.startswith("versions"):
        assert parse_registry_model(uri, allow_floating=True).version == "latest"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"model\.source=azureml needs 'model\.uri'.*or model\.registry_name"),
        (["model.uri=azureml://registries/azureml/models/phi"], r"not an Azure ML registry model"),
        ([f"model.uri={PHI3.replace('/7', '/latest')}"], r"allow_floating_revision"),
        (["model.registry_name=azureml", "model.registry_model=phi"], r"without model\.registry_version"),
        ([f"model.uri={PHI3}", "model.registry_version=7"], r"model\.uri and model\.registry_version are both"),
        ([*REGISTRY_KEYS[:2], "model.registry_version=latest"], r"'latest'.*allow_floating_revision"),
    ],
)
def test_the_configuration_refuses_a_missing_malformed_or_floating_uri(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(["model=phi3_mini_4k", "model.source=azureml", *overrides])


def test_a_pinned_registry_model_composes():
    params = compose(["model=phi3_mini_4k", "model.source=azureml", f"model.uri={PHI3}"])
    assert params.model.source == "azureml" and params.model.uri == PHI3


def test_the_registry_model_may_be_named_by_three_keys_instead_of_a_uri():
    from slmtune.source_uris import configured_registry_model

    params = compose(["model=phi3_mini_4k", "model.source=azureml", *REGISTRY_KEYS])
    assert configured_registry_model(params.model).uri == PHI3  # the version as YAML's 7 (an int) too


def mlflow_artifact(root: Path, base: Path, inside: str) -> Path:
    """An MLflow model artifact holding the Hugging Face folder `base` at `inside`, plus what else MLflow writes."""
    shutil.copytree(base, root / inside)
    (root / "MLmodel").write_text(MLMODEL)
    (root / "requirements.txt").write_text("transformers\n")
    return root


@pytest.fixture(scope="module")
def hf_base(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny Phi-3 Hugging Face folder, with the extras a registry artifact may carry (code, a pickle)."""
    from slmtune.config import compose as compose_params
    from slmtune.tiny_model import random_phi3

    folder = tmp_path_factory.mktemp("hf") / "model"
    random_phi3(compose_params().model.tiny, len(tiny_tokenizer), seed=1).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    (folder / "modeling_custom.py").write_text("raise SystemExit('remote code ran')\n")
    (folder / "training_args.bin").write_bytes(b"\x80\x04pickle")
    return folder


@pytest.mark.parametrize("inside", ["data/model", "model"])
def test_the_huggingface_folder_is_found_in_either_mlflow_layout(hf_base, tmp_path, inside):
    artifact = mlflow_artifact(tmp_path / "artifact", hf_base, inside)
    assert huggingface_folder(artifact) == artifact / inside


def test_an_artifact_without_a_model_folder_is_refused_naming_what_it_holds(hf_base, tmp_path):
    artifact = mlflow_artifact(tmp_path / "artifact", hf_base, "data/weights")
    with pytest.raises(ModelError, match=r"no Hugging Face model folder.*data/model/config\.json.*data/weights"):
        huggingface_folder(artifact)


def test_prepare_keeps_the_checked_files_and_records_the_version_and_hashes(hf_base, tmp_path, monkeypatch):
    """`prepare` with model.source=azureml on an artifact where the SDK's download would have put it."""
    import slmtune.registry_models as registry

    def sdk_download(model, dest: Path) -> Path:  # MLClient.models.download's place, out of reach here
        assert model.uri == PHI3
        return mlflow_artifact(dest / model.name, hf_base, "data/model")

    monkeypatch.setattr(registry, "download", sdk_download)
    overrides = ["model=phi3_mini_4k", "model.source=azureml", f"model.uri={PHI3}", "model.max_length=128"]
    prepare(compose(overrides), tmp_path / "data", tmp_path / "base")
    kept = sorted(p.name for p in (tmp_path / "base").iterdir())
    assert "model.safetensors" in kept and "config.json" in kept and "tokenizer.json" in kept
    assert "modeling_custom.py" not in kept and "training_args.bin" not in kept  # no code, no pickles
    record = json.loads((tmp_path / "base" / SOURCE_RECORD).read_text())
    assert record["uri"] == PHI3 and record["version"] == "7"
    import hashlib

    weights = (tmp_path / "base/model.safetensors").read_bytes()
    assert record["sha256"]["model.safetensors"] == hashlib.sha256(weights).hexdigest()


def test_the_job_prepares_from_a_deferred_prepare_and_the_registry_input(hf_base, tmp_path):
    """hw=azureml: `prepare` here leaves a reference; in the job it runs on the asset Azure ML mounted."""
    from slmtune.deferred_base import REFERENCE
    from slmtune.stages.prepare import main

    overrides = ["model=phi3_mini_4k", "model.source=azureml", f"model.uri={PHI3}", "model.max_length=128"]
    here, there = tmp_path / "here.yaml", tmp_path / "there.yaml"
    write_params(here, ["hw=azureml", *overrides])
    write_params(there, overrides)  # the job's params: launched in place (azureml.remote_params)
    main(["--params", str(here), "--out-data", str(tmp_path / "deferred"), "--out-model", str(tmp_path / "ref")])
    assert [p.name for p in (tmp_path / "ref").iterdir()] == [REFERENCE]
    artifact = mlflow_artifact(tmp_path / "input", hf_base, "model")  # where the job's input is mounted
    job = ["--params", str(there), "--out-data", str(tmp_path / "data"), "--out-model", str(tmp_path / "base")]
    main([*job, "--deferred-data", str(tmp_path / "deferred"), "--registry-artifact", str(artifact)])
    record = json.loads((tmp_path / "base" / SOURCE_RECORD).read_text())
    assert record["uri"] == PHI3 and "model.safetensors" in record["sha256"]
    assert (tmp_path / "data" / "source.json").read_text() == (tmp_path / "deferred" / "source.json").read_text()
    local = tmp_path / "local"
    prepare(compose(overrides), local / "data", local / "base", source=None, registry_artifact=artifact)
    for split in ("train.jsonl", "val.jsonl", "test.jsonl"):  # the same rows as a prepare run in one place
        assert (tmp_path / "data" / split).read_bytes() == (local / "data" / split).read_bytes()


@pytest.fixture(scope="module")
def mlflow_flavour_artifact(hf_base, tmp_path_factory) -> Path:
    """An artifact written by MLflow's own transformers flavour (`mlflow.transformers.save_model`)."""
    pytest.importorskip("mlflow.transformers")
    import huggingface_hub.constants
    import mlflow.transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = True  # the flavour looks for a model card on the hub
    try:
        path = tmp_path_factory.mktemp("mlflow") / "artifact"
        model = {
            "model": AutoModelForCausalLM.from_pretrained(hf_base),
            "tokenizer": AutoTokenizer.from_pretrained(hf_base),
        }
        mlflow.transformers.save_model(model, str(path), task="text-generation", pip_requirements=["transformers"])
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = offline
    return path


def test_an_artifact_of_mlflows_transformers_flavour_prepares_with_its_separate_tokenizer(
    mlflow_flavour_artifact, hf_base, tmp_path
):
    """MLflow writes the weights to `model/` and the tokenizer to `components/tokenizer/`: both are found."""
    from slmtune.registry_models import tokenizer_folder

    artifact = mlflow_flavour_artifact
    assert (artifact / "MLmodel").is_file() and huggingface_folder(artifact) == artifact / "model"
    assert tokenizer_folder(artifact, artifact / "model") == artifact / "components" / "tokenizer"
    overrides = ["model=phi3_mini_4k", "model.source=azureml", f"model.uri={PHI3}", "model.max_length=128"]
    prepare(compose(overrides), tmp_path / "data", tmp_path / "base", registry_artifact=artifact)
    for name in ("tokenizer.json", "model.safetensors"):
        assert (tmp_path / "base" / name).read_bytes() == (hf_base / name).read_bytes()
