"""A real `slmtune serve` process on a free 127.0.0.1 port, for the serving tests."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx

from helpers import BIN, tool_env
from slmtune.serving.loadtest import free_port, wait_healthy

API_KEY = "test-key-" + os.urandom(8).hex()


class ServerProcess:
    """`slmtune serve --model-path FOLDER` with its stderr in `log`; `url`, `client()`, `stop()`."""

    def __init__(self, folder: Path, log: Path, *options: str, api_key: str | None = API_KEY):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log, self.api_key = log, api_key
        command = [str(BIN / "slmtune"), "serve", "--model-path", str(folder), "--port", str(self.port), *options]
        env = tool_env()
        env.pop("SLMTUNE_API_KEY", None)
        if api_key:
            env["SLMTUNE_API_KEY"] = api_key  # the environment variable, as a deployment would set it
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        wait_healthy(self.url, self.process, log, timeout=120)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, **options) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=60, **options)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)
