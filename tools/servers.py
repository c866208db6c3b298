"""Real servers in subprocesses, for tests, the fuzzing gate and the benchmarks.

One implementation of "start a server on a free port, wait until it answers,
stop it and every worker": :class:`ServerProcess` runs any command (``myapi
serve``, or a baseline gunicorn app in benchmarks/) in its own process group
with its output in a log file; :func:`myapi_server` builds the ``myapi
serve`` one on a database, with rate limiting off and cheap password hashing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
API = "/api/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


class ServerNotReady(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log."""


class ServerProcess:
    """A server command in its own process group, output to ``log``, ready when ``probe`` answers."""

    def __init__(self, argv: list[str], *, port: int, env: dict[str, str], log: Path,
                 probe: str = f"{API}/health", workers: int = 0, name: str = "server"):
        self.argv = argv
        self.port = port
        self.env = env
        self.log = log
        self.probe = probe
        self.workers = workers
        self.name = name
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                            cwd=ROOT, start_new_session=True)
        return self

    def wait(self, timeout: float = 60) -> ServerProcess:
        """Until the probe answers below 500 and every worker is up; ServerNotReady otherwise."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerNotReady(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
            with contextlib.suppress(requests.RequestException):
                if (requests.get(self.url + self.probe, timeout=2).status_code < 500
                        and len(self.worker_pids()) >= self.workers):
                    return self
            time.sleep(0.1)
        raise ServerNotReady(f"{self.name} did not answer {self.probe} within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.process else []

    def stop(self) -> None:
        """SIGTERM the process group (master and workers), SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def myapi_env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a throwaway ``myapi serve``: no inherited MYAPI_*, limits off, cheap hashing."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MYAPI_")}
    env.update({
        "MYAPI_DATABASE_URL": database_url,
        "MYAPI_SECRET_KEY": "test",
        "MYAPI_RATELIMIT_ENABLED": "false",
        "MYAPI_ARGON2_MEMORY_COST": "1024",
        "MYAPI_ARGON2_TIME_COST": "1",
        "MYAPI_LOG_LEVEL": "WARNING",
        # gunicorn >= 25.1 opens a control socket in $XDG_RUNTIME_DIR: one
        # per server, so parallel runs and restarts do not collide.
        "XDG_RUNTIME_DIR": str(workdir),
        **extra,
    })
    return env


def myapi_server(env: dict[str, str], log: Path, *, workers: int = 4, threads: int | None = None,
                 timeout: int | None = None, port: int | None = None,
                 entry: list[str] | None = None) -> ServerProcess:
    """``myapi serve`` (this interpreter's) on ``port`` (a free one by default), not started yet.

    ``entry`` replaces ``["-m", "myapi.cli"]``: e.g. ``["-c", code]`` where
    ``code`` prepares something test-only and ends with ``myapi.cli.main()``.
    """
    port = port or free_port()
    argv = [sys.executable, *(entry or ["-m", "myapi.cli"]), "serve", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    return ServerProcess(argv, port=port, env=env, log=log, workers=workers, name="myapi serve")


def start_myapi(env: dict[str, str], log: Path, *, attempts: int = 3, **options) -> ServerProcess:
    """A started, answering ``myapi serve``; a free port taken before gunicorn binds it is tried again."""
    for attempt in range(attempts):
        server = myapi_server(env, log, **options).start()
        try:
            return server.wait(30)
        except ServerNotReady:
            output = server.tail(100_000)
            server.stop()
            if "Address already in use" not in output or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
