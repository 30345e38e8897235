"""Shared fixtures: the repository, a tiny tokenizer, and real pipeline runs in temporary copies (read-only)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from helpers import FAKE_SECRETS, ROOT, copy_project, sh
from slmtune.config import compose
from slmtune.environment import pin_cpu_isa

# In-process runs compute with the same kernels as the stages they are compared with.
pin_cpu_isa(compose().hw.cpu_isa)


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
    from slmtune.config import compose
    from slmtune.data import load_examples
    from slmtune.prompts import user_message
    from slmtune.tiny_model import train_tokenizer

    params = compose()
    examples = load_examples(ROOT / params.data.source, params.data.labels)
    texts = [user_message(params.data.instruction, e.phrase) for e in examples] + [e.label for e in examples]
    return train_tokenizer(texts, params.model.tiny.vocab_size, params.model.chat_template)
