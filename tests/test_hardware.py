"""Hardware profiles fail fast, with a hint, on a machine that cannot run them."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from helpers import BIN, ROOT, tool_env

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@needs_no_cuda
def test_check_hw_cuda_says_cuda_is_missing_and_how_to_pick_cpu():
    result = subprocess.run(
        [str(BIN / "slmtune"), "check-hw", "hw=cuda"], capture_output=True, text=True, env=tool_env(), check=False
    )
    assert result.returncode == 1
    assert "CUDA is not available" in result.stderr
    assert "HW=cpu" in result.stderr


@needs_no_cuda
def test_make_train_cuda_stops_before_any_work(tmp_path):
    start = time.perf_counter()
    result = subprocess.run(
        ["make", "-C", str(ROOT), "train", "HW=cuda", f"VENV={BIN.parent}"],
        capture_output=True,
        text=True,
        env=tool_env(),
        check=False,
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode != 0
    assert "CUDA is not available" in result.stderr
    assert "dvc exp run" not in result.stdout.split("check-hw")[-1]
    assert elapsed < 30


def test_cpu_profile_passes_the_check():
    result = subprocess.run(
        [sys.executable, "-m", "slmtune.cli", "check-hw", "hw=cpu"],
        capture_output=True,
        text=True,
        env=tool_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
