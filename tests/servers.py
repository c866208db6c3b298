"""Real servers for tests: ``myapi serve`` (gunicorn) as a subprocess on a test database."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

API = "/api/v1"
START_TIMEOUT = 30  # for the server to answer /health


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """``python -m myapi.cli serve`` in its own process group, output to a log file."""

    def __init__(self, database_url: str, workdir: Path, *, workers: int = 4, env: dict | None = None):
        self.database_url = database_url
        self.workdir = workdir
        self.workers = workers
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.log = workdir / "server.log"

    def environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("MYAPI_")}
        env.update({
            "MYAPI_DATABASE_URL": self.database_url,
            "MYAPI_SECRET_KEY": "test",
            "MYAPI_RATELIMIT_ENABLED": "false",
            "MYAPI_ARGON2_MEMORY_COST": "1024",
            "MYAPI_ARGON2_TIME_COST": "1",
            "MYAPI_LOG_LEVEL": "WARNING",
            # gunicorn >= 25.1 opens a control socket in $XDG_RUNTIME_DIR: one
            # per server, so parallel runs and restarts do not collide.
            "XDG_RUNTIME_DIR": str(self.workdir),
        })
        env.update(self.extra_env)
        return env

    def start(self) -> str:
        for attempt in range(3):  # a free port can be taken before gunicorn binds it
            port = free_port()
            with self.log.open("w") as out:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "myapi.cli", "serve", "--bind", f"127.0.0.1:{port}",
                     "--workers", str(self.workers)],
                    stdout=out, stderr=subprocess.STDOUT, env=self.environment(), start_new_session=True,
                )
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_healthy():
                return self.url
            output = self.log.read_text()
            self.stop()
            if "Address already in use" in output and attempt < 2:
                continue
            pytest.fail(f"myapi serve did not come up (exit code {self.process.returncode}):\n{output}")
        raise AssertionError("unreachable")

    def _wait_healthy(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if requests.get(f"{self.url}{API}/health", timeout=2).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """SIGTERM the process group (master and workers), SIGKILL if it lingers."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
