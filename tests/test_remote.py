"""Remote storage: the Azure Blob remote against Azurite, and experiments travelling between clones.

Azurite (Microsoft's Azure Storage emulator, from npm: `make setup-test`) is started by these
tests on 127.0.0.1 with telemetry off, under an account whose key is made at run time.
"""

from __future__ import annotations

import base64
import os
import secrets
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import BIN, ROOT, copy_run, sh

pytestmark = pytest.mark.slow
AZURITE = ROOT / "node_modules/.bin/azurite-blob"
CONTAINER = "slmtune"  # the container in the committed remote URL azure://slmtune/dvc
LABELS = {"sad", "joy", "fear", "surprise"}


@dataclass
class Azurite:
    """A running Azurite blob service and the credentials of its one account."""

    process: subprocess.Popen
    account: str
    key: str
    port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{self.account};"
        )

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}


def _listening_port(process: subprocess.Popen, timeout: float = 60) -> int:
    """The port from Azurite's 'successfully listens on http://127.0.0.1:PORT' line."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1)
        if not ready:
            continue
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "successfully listens on http://127.0.0.1:" in line:
            return int(line.strip().rsplit(":", 1)[1])
    process.kill()
    pytest.fail("Azurite did not start:\n" + "".join(seen))


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    """Azurite's blob service on 127.0.0.1 (a free port), with the container DVC expects already created."""
    if not AZURITE.is_file():
        pytest.fail(f"{AZURITE} is missing: run `make setup-test` (npm ci installs Azurite from package-lock.json)")
    account, key = f"slmtune{secrets.token_hex(4)}", base64.b64encode(secrets.token_bytes(64)).decode()
    workspace = tmp_path_factory.mktemp("azurite")
    command = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", str(workspace)]
    command += ["--disableTelemetry", "--skipApiVersionCheck", "--silent"]
    process = subprocess.Popen(
        command,
        env={**os.environ, "AZURITE_ACCOUNTS": f"{account}:{key}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Azurite(process, account, key, _listening_port(process))
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(server.connection_string).create_container(CONTAINER)
    yield server
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def pushed(pipeline_run, azurite, tmp_path_factory) -> Path:
    """A copy of the reproduced project, pushed to the Azure remote, with a bare git remote 'origin' holding main."""
    project = copy_run(pipeline_run, tmp_path_factory.mktemp("pushed") / "project")
    sh(["dvc", "push", "-r", "azure"], project, extra_env=azurite.env)
    bare = project.parent / "origin.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(bare)], project)
    sh(["git", "remote", "add", "origin", str(bare)], project)
    sh(["git", "push", "-q", "origin", "main"], project)
    return project


def fresh_clone(pushed: Path, dest: Path) -> Path:
    sh(["git", "clone", "-q", str(pushed.parent / "origin.git"), str(dest)], dest.parent)
    return dest


def test_azurite_listens_on_loopback_only(azurite):
    import psutil

    processes = [psutil.Process(azurite.process.pid), *psutil.Process(azurite.process.pid).children(recursive=True)]
    listening = [c.laddr for p in processes for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "Azurite listens on nothing"
    assert {address.ip for address in listening} == {"127.0.0.1"}


def test_a_fresh_clone_pulls_from_azure_and_classifies_without_running_a_stage(pushed, azurite, tmp_path):
    clone = fresh_clone(pushed, tmp_path / "clone")
    sh(["dvc", "pull", "-r", "azure"], clone, extra_env=azurite.env)
    status = sh(["dvc", "status"], clone)
    assert "Data and pipelines are up to date" in status.stdout
    for name in ("models/int4/model.onnx", "models/merged/model.safetensors", "data/prepared/test.jsonl"):
        assert (clone / name).read_bytes() == (pushed / name).read_bytes(), name
    classify = [str(BIN / "slmtune"), "classify", "What a lovely surprise party!", "--model-path", "models/int4"]
    result = sh(classify, clone)
    assert result.stdout.strip() in LABELS


def test_dvc_get_fetches_just_the_int4_model_of_a_revision(pushed, azurite, tmp_path):
    served = tmp_path / "serve" / "int4"
    origin = str(pushed.parent / "origin.git")
    get = ["dvc", "get", origin, "models/int4", "--rev", "main", "-o", str(served), "--remote", "azure"]
    sh(get, tmp_path, extra_env=azurite.env)
    assert sorted(p.name for p in served.iterdir()) == sorted(p.name for p in (pushed / "models/int4").iterdir())
    classify = [str(BIN / "slmtune"), "classify", "I am terrified of the storm.", "--model-path", str(served)]
    result = sh(classify, tmp_path)
    assert result.stdout.strip() in LABELS


def test_an_experiment_travels_through_git_and_azure_and_applies_exactly(pushed, azurite, tmp_path):
    sh(["dvc", "exp", "run", "--temp", "--name", "travel", "-S", "eval.latency_repetitions=2"], pushed)
    ref = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], pushed).stdout.split()
    [travel] = [name for name in ref if name.endswith("/travel")]
    expected = sh(["git", "show", f"{travel}:metrics/eval.json"], pushed).stdout
    sh(["dvc", "exp", "push", "-r", "azure", "origin", "travel"], pushed, extra_env=azurite.env)

    clone = fresh_clone(pushed, tmp_path / "teammate")
    assert "travel" in sh(["dvc", "exp", "list", "origin"], clone).stdout
    sh(["dvc", "exp", "pull", "-r", "azure", "origin", "travel"], clone, extra_env=azurite.env)
    sh(["dvc", "exp", "apply", "travel"], clone)
    assert (clone / "metrics/eval.json").read_text() == expected
    assert "latency_repetitions: 2" in (clone / "params.yaml").read_text()
    sh(["dvc", "pull", "-r", "azure"], clone, extra_env=azurite.env)
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], clone).stdout


def test_a_push_leaves_no_secret_in_any_tracked_or_dvc_file(pushed, azurite, tmp_path):
    clone = fresh_clone(pushed, tmp_path / "scan")
    secrets_ = [azurite.key, azurite.connection_string, f"AccountKey={azurite.key[:20]}"]
    roots = [pushed, clone, pushed.parent / "origin.git"]
    skipped = {pushed / ".dvc/config.local", clone / ".dvc/config.local"}  # --local config is the place for them
    files = [p for root in roots for p in root.rglob("*") if p.is_file() and p not in skipped]
    assert any(p.name == "dvc.lock" for p in files)
    assert any(p.name == "config" and p.parent.name == ".dvc" for p in files)
    leaks = [str(p) for p in files for secret in secrets_ if secret.encode() in p.read_bytes()]
    assert leaks == []
    config = sh(["dvc", "config", "--list", "--project"], pushed).stdout
    assert "azure://slmtune/dvc" in config and azurite.key not in config


def test_the_azure_remote_without_credentials_fails_with_dvcs_message(pushed, tmp_path):
    clone = fresh_clone(pushed, tmp_path / "nocreds")
    env = {name: "" for name in os.environ if name.startswith("AZURE_STORAGE")}
    result = sh(["dvc", "pull", "-r", "azure"], clone, check=False, extra_env=env)
    assert result.returncode != 0
    assert "account_name or connection_string" in result.stdout + result.stderr
    assert not (clone / "models/int4").exists()
    shutil.rmtree(clone)
