"""The azureml profile: settings, the command job and its offline validation by the SDK itself.

Nothing here contacts Azure: every test runs with outgoing connections refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, refuse_connections
from slmtune import azureml
from slmtune.config import Params, compose, compose_raw, validate
from slmtune.errors import ConfigError, DataError, HardwareError, ModelError

# The SDK's marshmallow schemas warn on every load; nothing to act on here.
pytestmark = pytest.mark.filterwarnings("ignore:The `context` parameter is deprecated")

FAKE = {
    "subscription_id": "00000000-0000-0000-0000-000000000000",
    "resource_group": "rg-slmtune-test",
    "workspace": "ws-slmtune-test",
    "compute": "gpu-cluster-test",
}
FAKE_ENV = {azureml.ENV_VARS[key]: value for key, value in FAKE.items()}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    refuse_connections(monkeypatch)


@pytest.fixture(scope="module")
def azureml_raw() -> dict:
    """hw=azureml on a model that is not downloaded (tiny): one command job with uploaded inputs.

    A hub or registry model makes a prepare -> train_lora pipeline instead (test_azureml_pipeline.py).
    """
    return compose_raw(["hw=azureml", "model=tiny_phi3"])[0]


@pytest.fixture
def params(azureml_raw) -> Params:
    return validate(azureml_raw)


@pytest.fixture
def project(tmp_path, azureml_raw, params) -> dict:
    """A composed params.yaml, the staged code, and local stand-ins for the two inputs."""
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(azureml_raw, sort_keys=False))
    data = tmp_path / "data" / "prepared"
    base = tmp_path / "models" / "base"
    for folder, name in ((data, "train.jsonl"), (base, "config.json")):
        folder.mkdir(parents=True)
        (folder / name).write_text("{}\n")
    code = azureml.stage_code(ROOT, params_path, tmp_path / "code", params.hw)
    return {"code": code, "data": data, "base": base}


def require_sdk() -> None:
    """Skip where the optional SDK is not installed (`pip install -e '.[azureml]'`)."""
    pytest.importorskip("azure.ai.ml")
    pytest.importorskip("azure.identity")


@pytest.fixture
def job(params, project):
    require_sdk()
    settings = azureml.resolve_settings(params.hw.azureml, FAKE_ENV)
    return azureml.build_job(
        params,
        settings,
        code=project["code"],
        data=project["data"],
        base=project["base"],
        lock=ROOT / "requirements.lock",
    )


def test_profile_composes_inherits_cuda_and_holds_no_ids():
    params = compose(["hw=azureml"])
    hw = params.hw
    assert (hw.name, hw.launcher, hw.device, hw.dtype) == ("azureml", "azureml", "cuda", "bfloat16")
    assert params.model.name == "phi3_mini_4k"
    assert hw.azureml.hf_token_secret is None  # no token is sent unless a secret is named
    assert hw.azureml.experiment_name == "slmtune"
    assert hw.azureml.instance_count == 1
    assert all(getattr(hw.azureml, key) is None for key in FAKE)
    raw = yaml.safe_load((ROOT / "conf" / "hw" / "azureml.yaml").read_text())
    assert raw["defaults"] == ["cuda"]
    for profile in sorted((ROOT / "conf" / "hw").glob("*.yaml")):  # no profile writes an ID
        block = (yaml.safe_load(profile.read_text()) or {}).get("azureml", {})
        assert all(block.get(key) is None for key in FAKE), profile


def test_settings_come_from_the_environment_and_overrides_win():
    params = compose(["hw=azureml", "hw.azureml.compute=gpu-a100"])
    settings = azureml.resolve_settings(params.hw.azureml, FAKE_ENV)
    assert settings.compute == "gpu-a100"
    assert (settings.subscription_id, settings.resource_group, settings.workspace) == (
        FAKE["subscription_id"],
        FAKE["resource_group"],
        FAKE["workspace"],
    )


@pytest.mark.parametrize("key", sorted(FAKE))
def test_a_missing_setting_names_the_key_and_how_to_set_it(params, key):
    environ = {var: value for var, value in FAKE_ENV.items() if var != azureml.ENV_VARS[key]}
    with pytest.raises(HardwareError) as caught:
        azureml.resolve_settings(params.hw.azureml, environ)
    message = str(caught.value)
    assert f"'hw.azureml.{key}'" in message
    assert azureml.ENV_VARS[key] in message
    assert f"-S hw.azureml.{key}=" in message
    assert message.count("hw.azureml.") == 2  # only the missing key


@pytest.mark.parametrize("key", ["instance_count", "process_count_per_instance"])
def test_zero_nodes_or_processes_are_refused_naming_the_key(key):
    with pytest.raises(ConfigError, match=rf"hw\.azureml\.{key}.*>= 1"):
        compose(["hw=azureml", f"hw.azureml.{key}=0"])


def test_submit_stops_before_azure_when_settings_are_missing(params, project):
    with pytest.raises(HardwareError, match="AZUREML_COMPUTE"):
        azureml.submit(params, data=project["data"], base=project["base"], root=ROOT, environ={})


def test_a_missing_sdk_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.ai.ml", None)
    with pytest.raises(HardwareError, match=r"pip install -e '\.\[azureml\]'"):
        azureml.require_sdk()


def test_the_code_snapshot_leaves_out_environments_caches_and_outputs(project):
    code = project["code"]
    for needed in ("pyproject.toml", "README.md", "requirements.lock", "src/slmtune/stages/train_lora.py"):
        assert (code / needed).is_file(), needed
    for left_out in (".venv", ".git", ".dvc", "models", "data", "dvclive", "metrics", "node_modules", ".whl"):
        assert not (code / left_out).exists(), left_out
    assert sum(p.stat().st_size for p in code.rglob("*") if p.is_file()) < 5 * 2**20  # code, not tools
    assert not list(code.rglob("__pycache__"))
    remote = yaml.safe_load((code / "params.yaml").read_text())
    assert remote["hw"]["launcher"] == "python"  # the job trains in place, it does not submit again
    assert remote["hw"]["name"] == "azureml"


def test_the_job_runs_torchrun_when_the_profile_uses_every_gpu(tmp_path, azureml_raw):
    params = validate({**azureml_raw, "hw": {**azureml_raw["hw"], "num_processes": 0}})
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(azureml_raw, sort_keys=False))
    assert yaml.safe_load(azureml.remote_params(params_path, params.hw))["hw"]["launcher"] == "torchrun"


def test_the_environment_is_the_base_image_and_every_pin_of_the_lock(job, params):
    environment = job.environment
    assert environment.image == params.hw.azureml.base_image
    dependencies = environment.conda_file["dependencies"]
    assert f"python={azureml.PYTHON}" in dependencies
    pins = next(item["pip"] for item in dependencies if isinstance(item, dict))
    lock = [line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines() if line.strip()]
    assert pins == lock
    assert any(pin.startswith("torch==") for pin in pins)


def test_a_lock_line_that_is_not_a_pin_is_refused(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("torch==2.13.0\ntransformers>=5\n")
    with pytest.raises(ConfigError, match=r"requirements\.lock:2: 'transformers>=5'"):
        azureml.read_pins(lock)


def test_a_pip_freeze_lock_gives_pins_that_pypi_resolves(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# Editable Git install with no remote (slmtune==0.1.0)\n"
        "-e git+file:///work/main@0123456789abcdef#egg=slmtune\n"
        "torch==2.13.0+cpu\n"
        "tqdm==4.67.1\n"
    )
    assert azureml.read_pins(lock) == ["torch==2.13.0", "tqdm==4.67.1"]


def test_the_job_is_complete(job, project):
    assert job.code == str(project["code"])
    assert job.compute == FAKE["compute"]
    assert job.resources.instance_count == 1
    assert job.experiment_name == "slmtune"
    assert job.environment_variables["HF_HUB_OFFLINE"] == "1"
    assert job.environment_variables["DVC_NO_ANALYTICS"] == "1"
    assert job.distribution is None  # one process: nothing to distribute
    command = job.command
    assert command.startswith(azureml.RUN_FROM_CODE)  # no install: the processes of a node may start together
    assert "python -m slmtune.stages.train_lora --params params.yaml" in command
    assert "--checkpoint-root ${{outputs.checkpoints}}" in command
    assert 'if [ "${RANK:-0}" = 0 ]; then cp' in command  # only the main process copies the outputs
    assert "--data ${{inputs.data}} --base ${{inputs.base}}" in command
    for name in ("adapter", "metrics", "live"):
        assert f"${{{{outputs.{name}}}}}" in command
    assert {name: (put.type, put.path) for name, put in job.inputs.items()} == {
        "data": ("uri_folder", str(project["data"])),
        "base": ("uri_folder", str(project["base"])),
    }
    assert {name: (put.type, put.mode) for name, put in job.outputs.items()} == {
        **dict.fromkeys(("adapter", "metrics", "live"), ("uri_folder", "upload")),
        "checkpoints": ("uri_folder", "rw_mount"),  # written during training, there again when the job restarts
    }


def test_the_sdk_validates_the_job_offline_as_create_or_update_would(job):
    job._validate(raise_error=True)
    job.component._validate(raise_error=True)  # every ${{inputs.x}} / ${{outputs.x}} is declared
    job._to_job()._validate()  # command job: command, compute, environment, input references
    client = azureml.connect(azureml.Settings(**FAKE, experiment_name="slmtune", base_image="img", instance_count=1))
    assert client.jobs.validate(job, raise_on_failure=True).passed


def test_the_sdk_catches_a_broken_reference(job):
    job.component.command = job.command.replace("${{inputs.base}}", "${{inputs.model}}")
    assert not job.component._validate().passed


def test_the_job_round_trips_through_the_sdk_yaml_schema(job, tmp_path):
    from azure.ai.ml import load_job

    path = tmp_path / "job.yaml"
    job._to_job().dump(path)
    loaded = load_job(path)
    assert loaded.command == job.command
    assert loaded.compute == FAKE["compute"]
    assert loaded.environment.image == job.environment.image
    assert loaded.environment.conda_file == job.environment.conda_file
    assert loaded.environment_variables == job.environment_variables
    assert set(loaded.outputs) == {"adapter", "metrics", "live", "checkpoints"}
    assert set(loaded.inputs) == {"data", "base"}


def test_a_missing_local_input_says_to_run_prepare(params, project, tmp_path):
    require_sdk()
    settings = azureml.resolve_settings(params.hw.azureml, FAKE_ENV)
    kwargs = {"code": project["code"], "lock": ROOT / "requirements.lock"}
    with pytest.raises(DataError, match="dvc repro prepare"):
        azureml.build_job(params, settings, data=tmp_path / "nowhere", base=project["base"], **kwargs)
    with pytest.raises(ModelError, match="dvc repro prepare"):
        azureml.build_job(params, settings, data=project["data"], base=tmp_path / "nowhere", **kwargs)
    job = azureml.build_job(params, settings, data="azureml:tone-prepared:1", base=project["base"], **kwargs)
    assert job.inputs["data"].path == "azureml:tone-prepared:1"


def downloaded_outputs(folder: Path, adapter: bool = True) -> Path:
    """The layout `ml_client.jobs.download(..., output_name=x)` leaves: named-outputs/x/."""
    named = folder / "named-outputs"
    (named / "adapter").mkdir(parents=True)
    if adapter:
        (named / "adapter" / "adapter_config.json").write_text("{}")
        (named / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (named / "live" / "plots").mkdir(parents=True)
    (named / "live" / "metrics.json").write_text("{}")
    (named / "metrics").mkdir()
    (named / "metrics" / "train.json").write_text(json.dumps({"train_loss": 0.1}))
    return folder


def test_downloaded_outputs_move_into_place(tmp_path):
    downloaded = downloaded_outputs(tmp_path / "download")
    adapter, live = tmp_path / "adapter", tmp_path / "live"
    adapter.mkdir()
    live.mkdir()
    text = azureml.install_outputs(downloaded, adapter, live)
    assert json.loads(text) == {"train_loss": 0.1}
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert sorted(p.name for p in live.iterdir()) == ["metrics.json", "plots"]


def test_an_output_without_an_adapter_is_refused(tmp_path):
    downloaded = downloaded_outputs(tmp_path / "download", adapter=False)
    with pytest.raises(ModelError, match=r"adapter_config\.json"):
        azureml.install_outputs(downloaded, tmp_path, tmp_path)


def test_azureml_spec_prints_the_job_in_the_sdks_schema_and_no_secret(project, tmp_path, monkeypatch, capsys):
    """`slmtune azureml-spec`: the job `make train HW=azureml` would submit, printed, with fake secrets set."""
    require_sdk()
    from azure.ai.ml import load_job

    from slmtune.cli import main

    secrets = {"HF_TOKEN": "hf_fakesecret0123456789", "AZURE_CLIENT_SECRET": "client-fakesecret0123456789"}
    for name, value in {**FAKE_ENV, **secrets}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    main(["azureml-spec", "model=tiny_phi3", "--data", str(project["data"]), "--base", str(project["base"])])
    spec = capsys.readouterr().out
    assert not [name for name, value in secrets.items() if value in spec]
    (tmp_path / "job.yaml").write_text(spec)
    loaded = load_job(tmp_path / "job.yaml")
    assert loaded.compute == FAKE["compute"]
    assert set(loaded.inputs) == {"data", "base"}
    assert set(loaded.outputs) == {"adapter", "metrics", "live", "checkpoints"}
    assert "slmtune.stages.train_lora" in loaded.command
