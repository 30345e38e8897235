"""What tests share: paths, the subprocess environment, running commands, copies of the project, params."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slmtune.environment import child_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: the project's venv first, offline, no telemetry (slmtune.environment)."""
    env = child_env()
    return {
        **env,
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
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


def copy_run(project: Path, dest: Path) -> Path:
    """A copy of a reproduced project (git, DVC cache, outputs), for a test that changes it; the DVC remote
    of the copy is a folder beside it."""
    shutil.copytree(project, dest, symlinks=True)
    sh(["dvc", "remote", "modify", "--local", "local", "url", str(dest.parent / "remote")], dest)
    return dest


def with_changes(**sections: dict) -> dict:
    """The default composition of conf/ as a mapping, with some keys of some sections changed."""
    from slmtune.config import compose_raw

    raw = compose_raw()[0]
    return {**raw, **{name: {**raw[name], **changes} for name, changes in sections.items()}}


def params_with(**sections: dict):
    """The default `Params` with some keys of some sections changed (validated)."""
    from slmtune.config import validate

    return validate(with_changes(**sections))


def params_file(path: Path, overrides: list[str] | None = None) -> Path:
    """Compose conf/ with `overrides` into the params file `path` (what `slmtune params` writes)."""
    from slmtune.config import write_params

    write_params(path, overrides)
    return path


def run_module(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` run in this process: the same exit code and output, without a new interpreter.

    For commands whose start-up (importing torch and transformers) a subprocess would only repeat.
    The working folder, arguments and environment are restored afterwards.
    """
    import io
    import runpy
    import traceback
    import warnings
    from contextlib import redirect_stderr, redirect_stdout

    assert args[0] == "-m", args
    module, argv = args[1], args[2:]
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    blocked_before = {name for name, loaded in sys.modules.items() if loaded is None}
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = [module, *argv]
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            # runpy warns that the module was imported before (by this process's earlier tests); it runs afresh.
            warnings.filterwarnings("ignore", message=".*found in sys.modules after import", category=RuntimeWarning)
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except BaseException:  # what an interpreter prints for an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for name in [name for name, loaded in sys.modules.items() if loaded is None and name not in blocked_before]:
            del sys.modules[name]  # imports a stage made look absent (bitsandbytes) are this process's again
    return subprocess.CompletedProcess([sys.executable, *args], code, out.getvalue(), err.getvalue())


def refuse_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to open a connection (a download, a sign-in) fail the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
