"""hw=azureml with a hub or registry model, and distributed jobs: nothing downloaded here, many nodes there.

`prepare` runs for real under hw=azureml and must download nothing (every outgoing connection
fails the test); the jobs it leads to are built by the SDK, dumped in its YAML schema, loaded back
and validated offline. Azure itself is out of reach: what the jobs do there is checked only
against the SDK's schema, and the Key Vault read only up to its failure to sign in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, refuse_connections
from slmtune import azureml
from slmtune.config import compose, write_params
from slmtune.deferred_base import DEFERRED, REFERENCE
from slmtune.errors import ConfigError, DataError, HardwareError, ModelError

pytestmark = pytest.mark.filterwarnings("ignore:The `context` parameter is deprecated")
pytest.importorskip("azure.ai.ml")

PHI3_REGISTRY = "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7"
FAKE_ENV = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-slmtune-test",
    "AZUREML_WORKSPACE": "ws-slmtune-test",
    "AZUREML_COMPUTE": "gpu-cluster-test",
}
SECRETS = {"HF_TOKEN": "hf_fakesecret0123456789", "AZURE_CLIENT_SECRET": "client-fakesecret0123456789"}
TWO_NODES = ["hw.azureml.instance_count=2", "hw.azureml.process_count_per_instance=8"]
REGISTRY = ["model.source=azureml", f"model.uri={PHI3_REGISTRY}"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection (a download, a sign-in) fails the test; fake IDs and secrets set."""
    refuse_connections(monkeypatch)
    for name, value in {**FAKE_ENV, **SECRETS}.items():
        monkeypatch.setenv(name, value)


def deferred_prepare(tmp_path: Path, overrides: list[str]) -> dict:
    """Run the prepare stage as `dvc repro` would under hw=azureml; return its params and outputs."""
    from slmtune.stages.prepare import main

    params_path = tmp_path / "params.yaml"
    params = write_params(params_path, ["hw=azureml", *overrides])
    data, base = tmp_path / "data" / "prepared", tmp_path / "models" / "base"
    main(["--params", str(params_path), "--out-data", str(data), "--out-model", str(base)])
    return {"params": params, "params_path": params_path, "data": data, "base": base}


def read_reference(base: Path) -> dict:
    return json.loads((base / REFERENCE).read_text())


def spec(run: dict, tmp_path: Path) -> tuple[str, object]:
    """The printed job spec and the job the SDK loads back from it."""
    from azure.ai.ml import load_job

    text = azureml.job_spec(run["params"], run["params_path"], run["data"], run["base"], root=ROOT)
    (tmp_path / "job.yaml").write_text(text)
    return text, load_job(tmp_path / "job.yaml")


@pytest.mark.parametrize("overrides", [[], REGISTRY], ids=["hub", "registry"])
def test_prepare_under_azureml_downloads_nothing_and_leaves_a_reference(tmp_path, overrides):
    run = deferred_prepare(tmp_path, overrides)
    assert sorted(p.name for p in run["base"].iterdir()) == [REFERENCE]  # no weights, no tokenizer
    reference = read_reference(run["base"])
    if overrides:
        assert reference == {
            "source": "azureml",
            "uri": PHI3_REGISTRY,
            "registry": "azureml",
            "name": "Phi-3-mini-4k-instruct",
            "version": "7",
        }
    else:
        model = run["params"].model
        assert reference == {"source": "hub", "hub_id": model.hub_id, "revision": model.revision}
    data = sorted(str(p.relative_to(run["data"])) for p in run["data"].rglob("*") if p.is_file())
    assert data == [DEFERRED, "source.json", "source/tone.jsonl"]
    assert (run["data"] / "source/tone.jsonl").read_bytes() == (ROOT / "data/raw/tone.jsonl").read_bytes()


def test_bad_data_stops_the_deferred_prepare_before_anything_is_written(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"phrase": "fine", "label": "joy"}\n{"phrase": "oops", "label": "anger"}\n')
    with pytest.raises(SystemExit):
        deferred_prepare(tmp_path, [f"data.source={bad}"])
    assert not (tmp_path / "data" / "prepared").exists() and not (tmp_path / "models" / "base").exists()


def test_a_stage_that_needs_the_weights_refuses_a_reference_naming_it(tmp_path):
    from slmtune.models import check_model_folder

    run = deferred_prepare(tmp_path, REGISTRY)
    with pytest.raises(ModelError, match=rf"a reference to {PHI3_REGISTRY}.*hw=cpu"):
        check_model_folder(run["base"])


def test_a_registry_model_makes_a_pipeline_whose_prepare_step_takes_the_asset(tmp_path):
    run = deferred_prepare(tmp_path, [*REGISTRY, *TWO_NODES, "hw.azureml.hf_token_secret=hf-token"])
    text, job = spec(run, tmp_path)
    assert not [name for name, value in SECRETS.items() if value in text]
    assert list(job.jobs) == ["prepare", "train_lora"]
    model_input = {"mode": "download", "path": PHI3_REGISTRY, "type": "mlflow_model"}
    assert yaml.safe_load(text)["inputs"]["model"] == model_input
    assert job.inputs["model"].path == PHI3_REGISTRY
    assert job.inputs["data"].path == str(run["data"])  # the checked data goes up; the model does not
    prepare, train = job.jobs["prepare"], job.jobs["train_lora"]
    assert "--deferred-data ${{inputs.data}} --registry-artifact ${{inputs.model}}" in prepare.component.command
    assert prepare.environment_variables["SLMTUNE_HF_TOKEN_SECRET"] == "hf-token"  # the name, never the value
    assert "HF_HUB_OFFLINE" not in prepare.environment_variables  # prepare downloads there
    assert "SLMTUNE_HF_TOKEN_SECRET" not in train.environment_variables
    assert train.environment_variables["HF_HUB_OFFLINE"] == "1"
    assert train.inputs["base"].path == "${{parent.jobs.prepare.outputs.base}}"
    assert (train.distribution.type, train.distribution.process_count_per_instance) == ("pytorch", 8)
    assert train.resources.instance_count == 2
    assert set(job.outputs) == {"adapter", "metrics", "live"}
    assert job.compute == FAKE_ENV["AZUREML_COMPUTE"]
    job._validate(raise_error=True)  # the SDK's own checks of the pipeline, offline


def test_a_hub_model_is_downloaded_by_the_prepare_step_at_its_pinned_revision(tmp_path):
    run = deferred_prepare(tmp_path, [])
    text, job = spec(run, tmp_path)
    assert set(job.inputs) == {"data"}  # the hub id and revision travel in the code snapshot's params
    assert "--registry-artifact" not in job.jobs["prepare"].component.command
    assert job.jobs["train_lora"].distribution is None and job.jobs["train_lora"].resources.instance_count == 1
    assert "SLMTUNE_HF_TOKEN_SECRET" not in text  # no secret named: no token sent
    job._validate(raise_error=True)


def test_the_job_params_let_azure_ml_start_the_processes_of_a_distributed_job(tmp_path):
    params_path = tmp_path / "params.yaml"
    params = write_params(params_path, ["hw=azureml", "model=tiny_phi3", *TWO_NODES])
    settings = azureml.check_ready(params.hw)
    assert settings.processes == 16
    local = yaml.safe_load(params_path.read_text())
    remote = yaml.safe_load(azureml.remote_params(params_path, params.hw, settings.processes))
    assert remote["hw"].pop("launcher") == "python"  # not torchrun: Azure ML starts the 16 processes itself
    assert local["hw"].pop("launcher") == "azureml" and remote == local


def test_a_two_node_command_job_validates_offline(tmp_path):
    base, data = tmp_path / "base", tmp_path / "data"
    for folder in (base, data):
        folder.mkdir()
        (folder / "x.json").write_text("{}")
    params_path = tmp_path / "params.yaml"
    params = write_params(params_path, ["hw=azureml", "model=tiny_phi3", *TWO_NODES, "hw.distributed=fsdp"])
    with azureml.staged_job(params, params_path, data, base, ROOT) as (settings, job):
        assert (job.distribution.process_count_per_instance, job.resources.instance_count) == (8, 2)
        client = azureml.connect(settings)
        assert client.jobs.validate(job, raise_on_failure=True).passed
        code = Path(job.code)
        assert yaml.safe_load((code / "params.yaml").read_text())["hw"]["distributed"] == "fsdp"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hw.num_processes=0"], r"hw\.num_processes.*Azure ML starts the processes"),
        (["hw.distributed=none"], r"hw\.distributed.*none.*ddp"),
    ],
)
def test_a_distributed_job_that_cannot_share_the_work_is_refused(overrides, message):
    params = compose(["hw=azureml", "model=tiny_phi3", *TWO_NODES, *overrides])
    with pytest.raises(ConfigError, match=message):
        azureml.check_ready(params.hw)


def test_missing_credentials_stop_the_submission_with_what_to_run(tmp_path, monkeypatch):
    """No Azure sign-in here: submission stops at the SDK's first call, saying how to sign in."""
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    run = deferred_prepare(tmp_path, [])
    out = tmp_path / "adapter"
    with pytest.raises(HardwareError, match=r"could not sign in to Azure.*az login"):
        azureml.submit(run["params"], params_path=run["params_path"], data=run["data"], base=run["base"], out=out)
    assert not out.exists()


def test_no_secret_named_reads_no_vault_and_sets_no_token():
    from slmtune.key_vault import export_hf_token

    environ: dict[str, str] = {}
    assert export_hf_token(environ) is False and environ == {}


def test_a_vault_out_of_reach_stops_prepare_naming_the_secret_and_vault_and_sets_no_token(monkeypatch):
    from slmtune.key_vault import SECRET_VAR, VAULT_VAR, export_hf_token

    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    environ = {SECRET_VAR: "hf-token", VAULT_VAR: "kv-slmtune-test"}
    with pytest.raises(HardwareError, match=r"secret 'hf-token' from kv-slmtune-test .*Key Vault Secrets User"):
        export_hf_token(environ)
    assert "HF_TOKEN" not in environ


def test_azureml_spec_prints_the_two_node_pipeline_without_preparing_anything_here(tmp_path, monkeypatch, capsys):
    """`slmtune azureml-spec` with the default hub model: the deferred prepare's checks, then the spec on stdout."""
    from azure.ai.ml import load_job

    from slmtune.cli import main

    monkeypatch.chdir(ROOT)
    before = sorted(p.name for p in (ROOT / "data").iterdir())
    main(["azureml-spec", *TWO_NODES, "hw.azureml.hf_token_secret=hf-token"])
    out, err = capsys.readouterr()
    assert "nothing downloaded here" in err and not [name for name, value in SECRETS.items() if value in out]
    (tmp_path / "job.yaml").write_text(out)
    job = load_job(tmp_path / "job.yaml")
    assert job.inputs["data"].path.endswith("data/prepared")  # what `make train HW=azureml` uploads
    assert job.jobs["train_lora"].distribution.process_count_per_instance == 8
    assert sorted(p.name for p in (ROOT / "data").iterdir()) == before  # the workspace is left as it was
    main(["azureml-spec", *TWO_NODES, "--without-pins"])
    brief = capsys.readouterr().out
    assert "torch==" not in brief and "# the " in brief and yaml.safe_load(brief)["jobs"]["train_lora"]


def test_a_fully_prepared_data_folder_is_refused_for_the_pipeline(tmp_path):
    params_path = tmp_path / "params.yaml"
    params = write_params(params_path, ["hw=azureml"])
    data = tmp_path / "prepared"
    data.mkdir()
    (data / "train.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match=r"prepared here in full.*make train HW=azureml"):
        azureml.job_spec(params, params_path, data, tmp_path, root=ROOT)


def test_the_readmes_two_node_spec_is_what_azureml_spec_prints(monkeypatch, capsys):
    """The README's excerpt of the printed two-node job: every line of it, in order, in today's output."""
    import re

    from slmtune.cli import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"\.venv/bin/slmtune (azureml-spec .*hw\.azureml\.instance_count=2.*)", readme)[1].split()
    excerpt = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL) if "train_lora:" in b)
    monkeypatch.chdir(ROOT)
    main(command)
    printed = iter(capsys.readouterr().out.splitlines())
    for line in excerpt.splitlines():
        assert any(line == candidate for candidate in printed), f"README line not printed (in order): {line!r}"


def test_the_registry_model_named_by_three_keys_gives_the_same_reference(tmp_path):
    keys = ["model.source=azureml", "model.registry_name=azureml", "model.registry_model=Phi-3-mini-4k-instruct"]
    by_keys = deferred_prepare(tmp_path / "keys", [*keys, "model.registry_version=7"])
    by_uri = deferred_prepare(tmp_path / "uri", REGISTRY)
    assert read_reference(by_keys["base"]) == read_reference(by_uri["base"])
