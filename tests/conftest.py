"""Shared fixtures: the repository, a tiny tokenizer, and real pipeline runs in temporary copies."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: the project's venv first, offline, no telemetry."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "GIT_AUTHOR_NAME": "slmtune tests",
        "GIT_AUTHOR_EMAIL": "tests@slmtune.invalid",
        "GIT_COMMITTER_NAME": "slmtune tests",
        "GIT_COMMITTER_EMAIL": "tests@slmtune.invalid",
    }


# Fake credentials in the environment of the main pipeline run: no file it writes may contain them.
# Made at run time so that nothing secret-shaped is tracked in git.
_FAKE = secrets.token_hex(16)
FAKE_SECRETS = {
    "HF_TOKEN": f"hf_{_FAKE}",
    "AZURE_STORAGE_CONNECTION_STRING": f"AccountName=fakeslmtune;AccountKey={_FAKE}==",
    "AZURE_STORAGE_KEY": f"{_FAKE}==",
    "AZURE_CLIENT_SECRET": f"client-{_FAKE}",
}


def sh(
    args: list[str], cwd: Path, check: bool = True, timeout: float = 1200, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command in `cwd`, capturing text output; fail with that output when it fails."""
    env = {**tool_env(), **(extra_env or {})}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def copy_project(dest: Path) -> Path:
    """Copy the project's tracked and unignored files into `dest` as a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    sh(["git", "init", "-q", "-b", "main"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "commit", "-q", "-m", "copy"], dest)
    sh(["dvc", "remote", "modify", "--local", "local", "url", str(dest.parent / "remote")], dest)
    return dest


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> Path:
    """The whole pipeline, `dvc repro`, on the tiny default in a temporary copy (committed afterwards)."""
    project = copy_project(tmp_path_factory.mktemp("run_a") / "project")
    result = sh(["dvc", "repro"], project, extra_env=FAKE_SECRETS)
    (project.parent / "repro.log").write_text(result.stdout + result.stderr)
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-q", "-m", "reproduced"], project)
    return project


@pytest.fixture(scope="session")
def experiment_run(tmp_path_factory) -> Path:
    """A second, cold copy of the project that runs the pipeline as `dvc exp run` with the same params."""
    project = copy_project(tmp_path_factory.mktemp("run_b") / "project")
    sh(["dvc", "exp", "run", "--name", "cold-rerun"], project)
    shutil.copy2(project / "metrics/eval.json", project.parent / "cold_eval.json")
    shutil.copytree(project / "models/adapter", project.parent / "cold_adapter")
    return project


@pytest.fixture(scope="session")
def prepared_workspace(tmp_path_factory) -> Path:
    """A folder holding the raw data, `prepare`'s outputs and a params.yaml: where train_lora can run."""
    workspace = tmp_path_factory.mktemp("prepared")
    shutil.copytree(ROOT / "data/raw", workspace / "data/raw")
    shutil.copy2(ROOT / "params.yaml", workspace / "params.yaml")
    sh([sys.executable, "-m", "slmtune.stages.prepare"], workspace)
    return workspace


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny tokenizer trained on the project's data set, with the default chat template."""
    from slmtune.config import compose, validate
    from slmtune.data import load_examples
    from slmtune.prompts import user_message
    from slmtune.tiny_model import train_tokenizer

    params = validate(compose())
    examples = load_examples(ROOT / params.data.source, params.data.labels)
    texts = [user_message(params.data.instruction, e.phrase) for e in examples] + [e.label for e in examples]
    return train_tokenizer(texts, params.model.tiny.vocab_size, params.model.chat_template)
