"""The suite's shared pipeline runs, started in the background when the session starts (conftest).

The end-to-end runs that many tests read (`pipeline_run`, `generation_runs`, `experiments`) take
minutes of CPU each. Run on demand, each kept one core idle while the tests waited; here every run a
selected test needs starts as soon as collection ends, at a lower CPU priority, while conftest puts
the tests that need no run first (then those that need the tone run, the generative runs, the
experiments: the order they finish in). A fixture waits for its run and fails with its log's tail.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import FAKE_SECRETS, copy_project, copy_run, sh, tool_env

# The runs, in the order they finish (and the order conftest puts the tests that read them in).
RUNS = ("pipeline_run", "generation_runs", "experiments")
NICE = 10  # below the foreground tests, whose servers and kill timings keep their pace
TIMEOUT_S = 1800


class Runs:
    """The background runs of one session: each a Future of what its fixture returns."""

    def __init__(self, root: Path, needed: set[str]) -> None:
        self.root = root
        self.processes: list[subprocess.Popen] = []
        self.pool = ThreadPoolExecutor(max_workers=len(RUNS), thread_name_prefix="background-run")
        self.futures: dict[str, Future] = {}
        if needed & {"pipeline_run", "experiments"}:
            self.futures["pipeline_run"] = self.pool.submit(self._tone)
        if "generation_runs" in needed:
            self.futures["generation_runs"] = self.pool.submit(self._generation)
        if "experiments" in needed:
            self.futures["experiments"] = self.pool.submit(self._experiments)

    def result(self, name: str):
        """What run `name` made, once it has finished (its error, if it failed)."""
        return self.futures[name].result(timeout=TIMEOUT_S)

    def close(self) -> None:
        """Stop what still runs (a session that ended early) and the threads that wait on it."""
        for future in self.futures.values():
            future.cancel()
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def start(self, command: list[str], project: Path, log: Path, extra_env: dict | None = None) -> subprocess.Popen:
        """`command` in `project`, niced, its output into `log`."""
        with log.open("w") as out:
            process = subprocess.Popen(
                ["nice", "-n", str(NICE), *command],
                cwd=project,
                env={**tool_env(), **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def finish(self, process: subprocess.Popen, log: Path, what: str) -> None:
        """Wait for `process`; fail with its log's tail unless it succeeded."""
        if process.wait(timeout=TIMEOUT_S) != 0:
            pytest.fail(f"{what} exited {process.returncode}:\n{log.read_text()[-4000:]}")

    def _tone(self) -> Path:
        """`dvc repro` on the tiny default (the tone task) in a copy of the project, committed afterwards."""
        project = copy_project(self.root / "run_a" / "project")
        log = self.root / "run_a" / "repro.log"
        self.finish(self.start(["dvc", "repro"], project, log, FAKE_SECRETS), log, "dvc repro")
        sh(["git", "add", "-A"], project)
        sh(["git", "commit", "-q", "-m", "reproduced"], project)
        return project

    def _generation(self) -> dict[str, Path]:
        from generation_runs import TASKS, experiment

        root = self.root / "generation"
        projects = {name: copy_project(root / name / "project") for name in TASKS}
        return self._run_each(root, {name: experiment(project, name) for name, project in projects.items()}, projects)

    def _experiments(self) -> dict[str, Path]:
        from experiments import EXPERIMENTS, command

        tone = self.futures["pipeline_run"].result(timeout=TIMEOUT_S)
        root = self.root / "experiments"
        projects = {name: copy_run(tone, root / name) for name in EXPERIMENTS}
        commands = {name: command(name, project, root) for name, project in projects.items()}
        return self._run_each(root, commands, projects)

    def _run_each(self, root: Path, commands: dict[str, list[str]], projects: dict[str, Path]) -> dict[str, Path]:
        """Each experiment's command in its project at once, logged to root/NAME.log; the projects once all succeed."""
        logs = {name: root / f"{name}.log" for name in commands}
        started = {name: self.start(command, projects[name], logs[name]) for name, command in commands.items()}
        for name, process in started.items():
            self.finish(process, logs[name], f"the {name} experiment")
        return projects
