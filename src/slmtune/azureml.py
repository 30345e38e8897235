"""The `azureml` launcher: run the train_lora stage as an Azure Machine Learning job.

The job runs the same stage script on a GPU compute cluster, in an environment that Azure ML
builds from `requirements.lock` on the profile's base image. A local, tiny or already prepared
base model goes up with `data/prepared` as `uri_folder` inputs of one command job. A hub or
registry model is never downloaded here (deferred_base.py): the job is a pipeline whose `prepare`
step downloads it (the registry asset as the step's input, the hub id at its pinned revision from
the params) and whose `train_lora` step trains on that step's outputs. With more than one node or
process per node, `train_lora` is a distributed PyTorch job: Azure ML starts every process with
torch.distributed's variables, the trainer shares the work by DDP or FSDP (`hw.distributed`),
only the main process writes, and checkpoints go to the job's `checkpoints` output, from which a
restarted (preempted) job resumes. When the job completes its `adapter`, `metrics` and `live`
outputs come back into the DVC workspace atomically, so DVC records them as if training ran locally.

Subscription, resource group, workspace and compute come from `hw.azureml.*` or from the
environment at submission time; nothing identifying is written to any file. The Azure ML SDK v2
is an optional dependency, imported only here and only when needed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from slmtune.atomic import atomic_outputs, atomic_write_text
from slmtune.config import AzureMLConfig, HwConfig, Params
from slmtune.environment import OFFLINE, QUIET
from slmtune.errors import ConfigError, DataError, HardwareError, ModelError
from slmtune.key_vault import job_variables

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Command, Environment, Job, PipelineJob

SDK_PINS = "azure-ai-ml==1.35.2 azure-identity==1.27.0 azure-keyvault-secrets==4.12.0"
INSTALL_HINT = f"pip install -e '.[azureml]' (or: pip install {SDK_PINS})"
ENV_VARS = {
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "workspace": "AZUREML_WORKSPACE",
    "compute": "AZUREML_COMPUTE",
}
PYTHON = "3.11"  # the interpreter requirements.lock was frozen with
JOB_ENVIRONMENT = {**QUIET, **OFFLINE}
# The project runs from the code snapshot's src/ (no install: every process of a node may start it at once).
RUN_FROM_CODE = "export PYTHONPATH=$PWD/src"
# Where the stage writes inside the job's working folder, copied to the named outputs at the end.
JOB_OUT = {"adapter": "models/adapter", "metrics": "metrics", "live": "dvclive/train"}
PREPARE_OUT = {"data": "data/prepared", "base": "models/base"}
LOCAL_AS_ASSET = re.compile(r"azureml:(/(?!/)[^\s:]*)$", re.MULTILINE)
ARM_SCOPE = "https://management.azure.com/.default"  # what the SDK's workspace calls need a token for
STAGED_CODE = "slmtune-azureml-"  # prefix of the temporary folder the code snapshot is staged in
CHECKPOINTS = "checkpoints"  # an output the trainer writes its checkpoints to, read back when the job restarts
REMOTE_PREFIXES = ("azureml:", "https://", "http://", "wasbs://", "abfss://", "adl://")
# Left out of the code snapshot: environments, caches, DVC's cache and config (may hold
# credentials), tests and CI, and stage outputs, which travel as job inputs or come back as outputs.
TOP_LEVEL_IGNORES = frozenset(
    {
        ".git",
        ".ci",
        ".venv",
        ".venv-peer",  # make bench-peer: Olive's own environment
        ".whl",
        "node_modules",
        ".hypothesis",
        "serve",
        "venv",
        ".dvc",
        ".azureml",
        "data",
        "models",
        "metrics",
        "plots",
        "dvclive",
        "dvc_plots",
        "tests",
        "build",
        "dist",
        ".slmtune-cache",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
    }
)
IGNORES_ANYWHERE = ("__pycache__", "*.pyc", "*.egg-info", ".env", ".env.*", ".DS_Store")
LOCAL_LABEL = re.compile(r"\+[A-Za-z0-9.]+(?=\s*(;|$))")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==\S+(\s*;.*)?$")


@dataclass(frozen=True)
class Settings:
    """Where the job goes: `hw.azureml` with the environment filled in and checked."""

    subscription_id: str
    resource_group: str
    workspace: str
    compute: str
    experiment_name: str
    base_image: str
    instance_count: int
    process_count_per_instance: int = 1
    hf_token_secret: str | None = None
    key_vault: str | None = None

    @property
    def processes(self) -> int:
        """Training processes in all: above 1, Azure ML runs a distributed PyTorch job."""
        return self.instance_count * self.process_count_per_instance


def resolve_settings(config: AzureMLConfig, environ: Mapping[str, str] | None = None) -> Settings:
    """`hw.azureml` values, else the environment's; HardwareError names every missing key."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    missing = []
    for key, var in ENV_VARS.items():
        value = (getattr(config, key) or environ.get(var) or "").strip()
        if value:
            values[key] = value
        else:
            missing.append(f"'hw.azureml.{key}' (set {var} or pass `-S hw.azureml.{key}=...`)")
    if missing:
        raise HardwareError("hw.launcher=azureml needs " + ", ".join(missing))
    return Settings(
        **values,
        experiment_name=config.experiment_name,
        base_image=config.base_image,
        instance_count=config.instance_count,
        process_count_per_instance=config.process_count_per_instance,
        hf_token_secret=config.hf_token_secret,
        key_vault=config.key_vault,
    )


def check_distribution(hw: HwConfig, settings: Settings) -> None:
    """A distributed job: Azure ML starts the processes, and the trainer needs a strategy to share the work."""
    if settings.processes == 1:
        return
    shape = (
        f"hw.azureml.instance_count={settings.instance_count} x "
        f"process_count_per_instance={settings.process_count_per_instance}"
    )
    if hw.num_processes != 1:
        raise ConfigError(
            f"'hw.num_processes' is {hw.num_processes} with {shape}: Azure ML starts the processes of a distributed "
            "job; leave hw.num_processes at 1 and set hw.azureml.process_count_per_instance to the GPUs per node"
        )
    if hw.distributed == "none":
        raise ConfigError(f"'hw.distributed' is none with {shape}; set `-S hw.distributed=ddp` (or fsdp)")


def require_sdk() -> None:
    """Raise HardwareError with the install command when the Azure ML SDK v2 is missing."""
    try:
        for module in ("azure.ai.ml", "azure.identity"):
            importlib.import_module(module)
    except ImportError as err:
        raise HardwareError(
            f"hw.launcher=azureml needs the Azure ML SDK v2 ({err.name or err} is not installed): {INSTALL_HINT}"
        ) from None


def check_ready(hw: HwConfig, environ: Mapping[str, str] | None = None) -> Settings:
    """What `check-hw` can verify offline: settings complete and the SDK installed."""
    settings = resolve_settings(hw.azureml, environ)
    check_distribution(hw, settings)
    require_sdk()
    return settings


def read_pins(lock: Path) -> list[str]:
    """The exact pins of `requirements.lock`, for a GPU machine.

    The project's own line is left out (the job installs it from the code snapshot), and a local
    version label is dropped (`torch==2.13.0+cpu` -> `torch==2.13.0`, PyPI's CUDA build on Linux).
    """
    if not lock.is_file():
        raise ConfigError(f"{lock}: not found; the Azure ML environment is built from it")
    pins = []
    for number, line in enumerate(lock.read_text().splitlines(), start=1):
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#") or (line.startswith(("-e ", "--editable")) and "slmtune" in line):
            continue
        match = PIN.match(line)
        if match is None:
            raise ConfigError(f"{lock}:{number}: '{line}' is not an exact pin (name==version)")
        if match["name"].lower() != "slmtune":
            pins.append(LOCAL_LABEL.sub("", line))
    return pins


def conda_spec(pins: list[str]) -> dict:
    """A conda environment: Python, pip, setuptools for `pip install -e .` (>= 77 reads PEP 639 licenses), pins."""
    return {
        "name": "slmtune",
        "channels": ["conda-forge"],
        "dependencies": [f"python={PYTHON}", "pip", "setuptools>=77", {"pip": pins}],
    }


def build_environment(base_image: str, lock: Path) -> Environment:
    """An anonymous environment that Azure ML builds (and caches) at job time: base image + lock."""
    require_sdk()
    from azure.ai.ml.entities import Environment

    return Environment(
        image=base_image,
        conda_file=conda_spec(read_pins(lock)),
        description=f"slmtune: {lock.name} on {base_image}",
    )


def _ignore(root: Path) -> Callable[[str, list[str]], set[str]]:
    """A copytree ignore function for the code snapshot of the project at `root`."""
    anywhere = shutil.ignore_patterns(*IGNORES_ANYWHERE)

    def ignore(folder: str, names: list[str]) -> set[str]:
        ignored = set(anywhere(folder, names))
        if Path(folder).resolve() == root:
            ignored |= TOP_LEVEL_IGNORES & set(names)
        return ignored

    return ignore


def remote_params(params_path: Path, hw: HwConfig, processes: int = 1) -> str:
    """`params.yaml` for the job: the same, but launched in place.

    python when Azure ML starts the processes (`processes` > 1) or there is one; torchrun on every
    GPU of the one node when `hw.num_processes` asks for it.
    """
    raw = yaml.safe_load(params_path.read_text())
    raw["hw"]["launcher"] = "python" if processes > 1 or hw.num_processes == 1 else "torchrun"
    return yaml.safe_dump(raw, sort_keys=False)


def stage_code(root: Path, params_path: Path, dest: Path, hw: HwConfig, processes: int = 1) -> Path:
    """Copy the project at `root` into `dest` (ignoring environments, caches and outputs) with the job's params."""
    root = root.resolve()
    if not (root / "pyproject.toml").is_file() or not (root / "src" / "slmtune").is_dir():
        raise ConfigError(f"{root}: not the slmtune project (no pyproject.toml or src/slmtune); run from its root")
    if not params_path.is_file():
        raise ConfigError(f"{params_path}: not found; run `make params` to compose it from conf/")
    shutil.copytree(root, dest, ignore=_ignore(root))
    atomic_write_text(dest / "params.yaml", remote_params(params_path, hw, processes))
    return dest


def _copy_to_outputs(outputs: Mapping[str, str]) -> str:
    return " && ".join(f"cp -R {local}/. ${{{{outputs.{name}}}}}/" for name, local in outputs.items())


def job_command() -> str:
    """Run the stage from the code snapshot; the main process (RANK 0) copies its outputs to the named outputs."""
    stage = (
        "python -m slmtune.stages.train_lora --params params.yaml --data ${{inputs.data}} --base ${{inputs.base}} "
        f"--out {JOB_OUT['adapter']} --metrics {JOB_OUT['metrics']}/train.json "
        f"--run-metrics {JOB_OUT['metrics']}/train_run.json --live {JOB_OUT['live']} "
        f"--checkpoint-root ${{{{outputs.{CHECKPOINTS}}}}}"
    )
    return f'{RUN_FROM_CODE} && {stage} && if [ "${{RANK:-0}}" = 0 ]; then {_copy_to_outputs(JOB_OUT)}; fi'


def prepare_command(registry: bool) -> str:
    """Prepare from a deferred prepare's data and the model reference in the params (or the registry input)."""
    artifact = " --registry-artifact ${{inputs.model}}" if registry else ""
    stage = (
        "python -m slmtune.stages.prepare --params params.yaml --deferred-data ${{inputs.data}}"
        f"{artifact} --out-data {PREPARE_OUT['data']} --out-model {PREPARE_OUT['base']}"
    )
    return f"{RUN_FROM_CODE} && {stage} && {_copy_to_outputs(PREPARE_OUT)}"


def input_path(path: str | Path, error: type[DataError | ModelError], hint: str) -> str:
    """A remote URI unchanged, or an existing local folder as an absolute path (uploaded on submission)."""
    text = str(path)
    if text.startswith(REMOTE_PREFIXES):
        return text
    local = Path(path).resolve()
    if not local.is_dir():
        raise error(f"{path}: not found; {hint}")
    return str(local)


def train_step(params: Params, settings: Settings, code: Path, env: Environment, **inputs: object) -> Command:
    """The train_lora command: `inputs` data and base, outputs, distribution over the nodes' processes."""
    require_sdk()
    from azure.ai.ml import Output, PyTorchDistribution, command

    distributed = settings.processes > 1
    return command(
        name="train_lora",
        display_name=f"slmtune train_lora ({params.model.name})",
        description="slmtune: LoRA fine-tuning (stage train_lora), submitted by hw=azureml",
        code=str(code),
        command=job_command(),
        inputs=inputs,
        outputs={
            **{name: Output(type="uri_folder", mode="upload") for name in JOB_OUT},
            CHECKPOINTS: Output(type="uri_folder", mode="rw_mount"),
        },
        environment=env,
        environment_variables=dict(JOB_ENVIRONMENT),
        instance_count=settings.instance_count,
        distribution=PyTorchDistribution(process_count_per_instance=settings.process_count_per_instance)
        if distributed
        else None,
    )


def prepare_step(params: Params, settings: Settings, code: Path, env: Environment, **inputs: object) -> Command:
    """The prepare command for a deferred prepare: downloads the model where the job runs, never here."""
    require_sdk()
    from azure.ai.ml import Output, command

    return command(
        name="prepare",
        display_name=f"slmtune prepare ({params.model.name})",
        description="slmtune: the base model downloaded and the data prepared in the job (stage prepare)",
        code=str(code),
        command=prepare_command(registry="model" in inputs),
        inputs=inputs,
        outputs={name: Output(type="uri_folder", mode="upload") for name in PREPARE_OUT},
        environment=env,
        environment_variables={**QUIET, **job_variables(settings.hf_token_secret, settings.key_vault)},
    )


def job_tags(params: Params) -> dict[str, str]:
    return {"slmtune.stage": "train_lora", "slmtune.model": params.model.name, "slmtune.hw": params.hw.name}


def build_job(
    params: Params,
    settings: Settings,
    *,
    code: Path,
    data: str | Path,
    base: str | Path,
    lock: Path,
) -> Command | PipelineJob:
    """The job: train_lora on uploaded data and base, or a prepare -> train_lora pipeline (deferred_base.py)."""
    require_sdk()
    from azure.ai.ml import Input

    from slmtune.deferred_base import is_deferred

    env = build_environment(settings.base_image, lock)
    hint = "run `dvc repro prepare` first"
    data_input = Input(type="uri_folder", path=input_path(data, DataError, hint), mode="download")
    if is_deferred(params):
        check_deferred_data(data)
        return build_pipeline(params, settings, code, env, data_input)
    job = train_step(
        params,
        settings,
        code,
        env,
        data=data_input,
        base=Input(type="uri_folder", path=input_path(base, ModelError, hint), mode="download"),
    )
    job.experiment_name, job.compute, job.tags = settings.experiment_name, settings.compute, job_tags(params)
    return job


def check_deferred_data(data: str | Path) -> None:
    """The pipeline's prepare step reads what a deferred prepare wrote; refuse a folder prepared here in full."""
    from slmtune.deferred_base import DEFERRED

    if not str(data).startswith(REMOTE_PREFIXES) and not (Path(data) / DEFERRED).is_file():
        raise DataError(
            f"{data}: prepared here in full, not for the Azure ML job (no {DEFERRED}); with a hub or registry "
            "model, hw=azureml prepares in the job: run `dvc exp run -S hw=azureml train_lora` (`make train "
            "HW=azureml`), whose prepare checks the data and downloads nothing"
        )


def build_pipeline(params: Params, settings: Settings, code: Path, env: Environment, data: object) -> PipelineJob:
    """prepare (the model downloaded there, from the hub or as the registry asset input) -> train_lora."""
    from azure.ai.ml import Input
    from azure.ai.ml.dsl import pipeline

    from slmtune.deferred_base import model_reference, registry_asset

    asset = registry_asset(model_reference(params.model))
    declared = {"data": Input(type="uri_folder"), **({"model": Input(type="mlflow_model")} if asset else {})}
    prepare_spec = prepare_step(params, settings, code, env, **declared)
    train_spec = train_step(params, settings, code, env, data=Input(type="uri_folder"), base=Input(type="uri_folder"))

    def train_on(prepare: Command) -> dict:
        train_lora = train_spec(data=prepare.outputs.data, base=prepare.outputs.base)
        return {name: getattr(train_lora.outputs, name) for name in JOB_OUT}

    # dsl reads the functions' parameters as the pipeline's inputs (and annotations as their types: none here)
    def from_registry(data, model):
        return train_on(prepare_spec(data=data, model=model))

    def from_hub(data):
        return train_on(prepare_spec(data=data))

    build = pipeline(
        name="slmtune_train_lora",
        display_name=f"slmtune prepare + train_lora ({params.model.name})",
        description="slmtune: prepare (the model downloaded in the job) and train_lora, submitted by hw=azureml",
        experiment_name=settings.experiment_name,
        compute=settings.compute,
        tags=job_tags(params),
    )
    if asset:
        return build(from_registry)(data=data, model=Input(type="mlflow_model", path=asset, mode="download"))
    return build(from_hub)(data=data)


def connect(settings: Settings, credential: object | None = None) -> MLClient:
    """An MLClient for the workspace, signed in with DefaultAzureCredential (no call is made yet)."""
    require_sdk()
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(
        credential or DefaultAzureCredential(),
        subscription_id=settings.subscription_id,
        resource_group_name=settings.resource_group,
        workspace_name=settings.workspace,
        enable_telemetry=False,
    )


@contextlib.contextmanager
def azure_errors(action: str, settings: Settings) -> Iterator[None]:
    """Turn the SDK's errors into HardwareError with what to check."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError

    def first_line(err: Exception) -> str:
        return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]

    try:
        yield
    except ClientAuthenticationError as err:
        raise HardwareError(
            f"{action}: could not sign in to Azure ({first_line(err)}). Run `az login`, or set AZURE_CLIENT_ID, "
            "AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a service principal."
        ) from None
    except ResourceNotFoundError as err:
        raise HardwareError(
            f"{action}: not found ({first_line(err)}). Check workspace '{settings.workspace}' in resource group "
            f"'{settings.resource_group}' and compute '{settings.compute}' (AZUREML_WORKSPACE, AZURE_RESOURCE_GROUP, "
            "AZUREML_COMPUTE or -S hw.azureml.*)."
        ) from None
    except AzureError as err:
        raise HardwareError(f"{action}: {first_line(err)}") from None


def _move_children(source: Path, dest: Path) -> None:
    for child in source.iterdir():
        os.replace(child, dest / child.name)


def install_outputs(downloaded: Path, adapter_dir: Path, live_dir: Path) -> str:
    """Move the downloaded `adapter` and `live` outputs into place; return the metrics JSON text."""
    named = downloaded / "named-outputs"
    if not (named / "adapter" / "adapter_config.json").is_file():
        raise ModelError(f"the job's 'adapter' output has no adapter_config.json (downloaded to {named / 'adapter'})")
    if not (named / "live").is_dir() or not any((named / "live").iterdir()):
        raise ModelError(f"the job's 'live' output is empty (downloaded to {named / 'live'})")
    metrics_file = named / "metrics" / "train.json"
    try:
        text = metrics_file.read_text()
        json.loads(text)
    except (OSError, ValueError) as err:
        raise ModelError(f"the job's 'metrics' output has no valid train.json ({err})") from None
    _move_children(named / "adapter", adapter_dir)
    _move_children(named / "live", live_dir)
    return text


def fetch_outputs(
    ml_client: MLClient, job_name: str, settings: Settings, *, out: Path, metrics: Path, run_metrics: Path, live: Path
) -> None:
    """Download the job's outputs to a temporary folder, then rename them into place (metrics last)."""
    with (
        atomic_outputs(out, live) as (adapter_tmp, live_tmp),
        tempfile.TemporaryDirectory(prefix=".azureml-download.", dir=out.parent) as scratch,
    ):
        with azure_errors(f"downloading the outputs of job {job_name}", settings):
            for name in JOB_OUT:
                ml_client.jobs.download(job_name, download_path=scratch, output_name=name)
        text = install_outputs(Path(scratch), adapter_tmp, live_tmp)
        run_file = Path(scratch) / "named-outputs" / "metrics" / run_metrics.name
        run_text = run_file.read_text() if run_file.is_file() else "{}\n"
    atomic_write_text(run_metrics, run_text)
    atomic_write_text(metrics, text)


def sign_in(settings: Settings) -> object:
    """DefaultAzureCredential, with a token already obtained: missing credentials stop here, before any upload."""
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    with azure_errors("signing in to Azure", settings):
        credential.get_token(ARM_SCOPE)
    return credential


def create_job(ml_client: MLClient, job: Command | PipelineJob, settings: Settings) -> Job:
    """Upload the code and inputs and create the job (its environment builds on first use)."""
    with azure_errors(f"submitting to workspace '{settings.workspace}'", settings):
        submitted = ml_client.jobs.create_or_update(job)
    print(f"[slmtune] Azure ML job {submitted.name}: {submitted.studio_url}", flush=True)
    return submitted


def wait_for(ml_client: MLClient, submitted: Job, settings: Settings) -> None:
    """Stream the job's logs until it ends; raise HardwareError unless it completed."""
    name = submitted.name
    try:
        with azure_errors(f"job {name} failed (see {submitted.studio_url})", settings):
            ml_client.jobs.stream(name)
            status = ml_client.jobs.get(name).status
    except KeyboardInterrupt:
        print(f"[slmtune] job {name} keeps running; cancel it with `az ml job cancel -n {name}`", flush=True)
        raise
    if status != "Completed":
        raise HardwareError(f"Azure ML job {name} ended {status}; see {submitted.studio_url}")


@contextlib.contextmanager
def staged_job(
    params: Params,
    params_path: Path,
    data: str | Path,
    base: str | Path,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[tuple[Settings, Command | PipelineJob]]:
    """The settings and the job, its code snapshot staged in a temporary folder (STAGED_CODE) while in use."""
    settings = check_ready(params.hw, environ)
    root = (root or Path.cwd()).resolve()
    with tempfile.TemporaryDirectory(prefix=STAGED_CODE) as tmp:
        code = stage_code(root, Path(params_path), Path(tmp) / "code", params.hw, settings.processes)
        yield settings, build_job(params, settings, code=code, data=data, base=base, lock=root / "requirements.lock")


def job_spec(
    params: Params,
    params_path: Path,
    data: str | Path = Path("data/prepared"),
    base: str | Path = Path("models/base"),
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The YAML of the job `submit` would send (the SDK's own job schema), without sending it.

    Its `code` is the project folder, of which submission uploads a snapshot (TOP_LEVEL_IGNORES left
    out, params.yaml rewritten by `remote_params`).
    """
    import io

    root = (root or Path.cwd()).resolve()
    with staged_job(params, params_path, data, base, root, environ) as (_, job):  # the SDK is checked here
        from azure.ai.ml.entities import PipelineJob

        stream = io.StringIO()
        (job if isinstance(job, PipelineJob) else job._to_job()).dump(stream)
    staged = re.compile(re.escape(tempfile.gettempdir()) + rf"/{STAGED_CODE}[^/\s]*/code")
    # A pipeline's local input dumps as `azureml:/abs/path` (the SDK's schema tries an asset name first);
    # it is a local folder that submission uploads, as in a command job, so it is printed as one.
    return LOCAL_AS_ASSET.sub(r"\1", staged.sub(lambda _: str(root), stream.getvalue()))


def submit(
    params: Params,
    *,
    params_path: Path = Path("params.yaml"),
    data: str | Path = Path("data/prepared"),
    base: str | Path = Path("models/base"),
    out: Path = Path("models/adapter"),
    metrics: Path = Path("metrics/train.json"),
    run_metrics: Path = Path("metrics/train_run.json"),
    live: Path = Path("dvclive/train"),
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Run train_lora on Azure ML and bring its outputs back to `out`, `metrics` and `live`; return the job name."""
    with staged_job(params, params_path, data, base, root, environ) as (settings, job):
        print(
            f"[slmtune] submitting train_lora to Azure ML workspace '{settings.workspace}', "
            f"compute '{settings.compute}', experiment '{settings.experiment_name}'",
            flush=True,
        )
        ml_client = connect(settings, sign_in(settings))
        submitted = create_job(ml_client, job, settings)
    name = submitted.name
    wait_for(ml_client, submitted, settings)
    fetch_outputs(
        ml_client, name, settings, out=Path(out), metrics=Path(metrics), run_metrics=Path(run_metrics), live=Path(live)
    )
    print(f"[slmtune] job {name}: adapter in {out}, metrics in {metrics}", flush=True)
    return name
