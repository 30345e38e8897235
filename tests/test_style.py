"""The code base stays ruff clean."""

from __future__ import annotations

import subprocess

from helpers import BIN, ROOT


def test_ruff_finds_nothing():
    result = subprocess.run([str(BIN / "ruff"), "check", "src", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
