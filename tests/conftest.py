"""Shared fixtures: the repository, a tiny tokenizer, and real pipeline runs in temporary copies (read-only)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from background import RUNS, Runs
from helpers import ROOT
from slmtune.config import compose
from slmtune.environment import pin_cpu_isa

# In-process runs compute with the same kernels as the stages they are compared with.
pin_cpu_isa(compose().hw.cpu_isa)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def run_rank(item: pytest.Item) -> int:
    """Where a test goes in the session: 0 reads no background run, else 1 + the last run it reads."""
    return max((RUNS.index(name) + 1 for name in item.fixturenames if name in RUNS), default=0)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """After pytest-randomly's shuffle: the tests that read no background run first, then by the run they wait
    for (background.RUNS). A module moves as a whole, so that its module fixtures are made once."""
    yield
    rank: dict[str, int] = {}
    for item in items:
        rank[item.module.__name__] = max(rank.get(item.module.__name__, 0), run_rank(item))
    items.sort(key=lambda item: rank[item.module.__name__])


@pytest.fixture(scope="session", autouse=True)
def background_runs(request, tmp_path_factory):
    """The pipeline runs this session's tests read, started at once in the background (background.py)."""
    needed = {name for item in request.session.items for name in item.fixturenames if name in RUNS}
    runs = Runs(tmp_path_factory.mktemp("background"), needed)
    yield runs
    runs.close()


@pytest.fixture(scope="session")
def pipeline_run(background_runs) -> Path:
    """The whole pipeline, `dvc repro`, on the tiny default in a temporary copy (committed afterwards).

    Shared by many tests and changed by none: a test that changes a run works on `copy_run(pipeline_run, ...)`.
    """
    return background_runs.result("pipeline_run")


@pytest.fixture(scope="session")
def generation_runs(background_runs) -> dict[str, Path]:
    """The generative tasks through all five stages (generation_runs.py): four projects, read-only."""
    return background_runs.result("generation_runs")


@pytest.fixture(scope="session")
def experiments(background_runs) -> dict[str, Path]:
    """QLoRA, DoRA and the polarity task as experiments on `pipeline_run` (experiments.py): read-only."""
    return background_runs.result("experiments")


@pytest.fixture
def prepared_workspace(pipeline_run, tmp_path) -> Path:
    """A folder of its own holding the raw data, `prepare`'s outputs and params.yaml: where train_lora can run."""
    workspace = tmp_path / "prepared"
    for folder in ("data/raw", "data/prepared", "models/base"):
        shutil.copytree(pipeline_run / folder, workspace / folder)
    shutil.copy2(pipeline_run / "params.yaml", workspace / "params.yaml")
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


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from Debian's package (`make test` installs it), driven by Playwright.

    Module-scoped: Playwright's sync API holds an event loop of its own while it runs, which the
    asyncio clients of other modules must not meet.
    """
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "no chromium on PATH: `make test` installs Debian's package (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()
