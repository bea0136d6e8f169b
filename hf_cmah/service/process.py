"""`hf-cmah serve` as a child process on a free loopback port: for tests, benchmarks and local tools.

The child runs the real command line; ``__enter__`` returns once ``/healthz`` answers (or
raises with the child's log), ``__exit__`` stops it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """`hf-cmah serve ARGS` on a free 127.0.0.1 port in a subprocess; ``url`` once /healthz answers.

    ``command`` runs another entry point instead (the Space's ``app.py``), told the port and host by
    ``$PORT`` and ``$HF_CMAH_HOST``. The child leads its own process group, so stopping it also stops
    what it started (a Blender render of a sample-library build).
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
        cwd: str | Path | None = None,
        command: list[str] | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        serve = [sys.executable, "-m", "hf_cmah.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.command = [*(command or serve), *args]
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PORT": str(self.port),
            "HF_CMAH_HOST": "127.0.0.1",
            **(env or {}),
        }
        self.startup_timeout = startup_timeout
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def __enter__(self) -> ServiceProcess:
        self.log_path = Path(tempfile.mkstemp(prefix="hf-cmah-serve-", suffix=".log")[1])
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hf-cmah serve exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return self
            time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"hf-cmah serve did not answer within {self.startup_timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the group (a child it started)
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


__all__ = ["ServiceProcess", "free_port"]
