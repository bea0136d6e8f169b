"""Starts a local ``hf-cmah serve`` from the command line in the preferences when the service is not answering.

No ``bpy`` here: it runs on a worker thread. The process belongs to the add-on, which stops it on unregister.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from pathlib import Path

from .client import ServiceClient, ServiceError

POLL_INTERVAL_S = 0.25
LOG_TAIL_CHARS = 600


class LocalService:
    """At most one service process, started on demand and shared by every job (guarded by a lock)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def ensure_running(
        self, client: ServiceClient, command: str, log_path: Path, wait_s: float, cancelled: threading.Event
    ) -> bool:
        """True if this call started the service; raises the health check's error when there is nothing to start."""
        with self._lock:
            try:
                client.health()
                return False
            except ServiceError as error:
                if error.code != "unreachable" or not command.strip():
                    raise
            if self.pid is None:
                self._process = _start(command, log_path)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if cancelled.is_set():
                    raise ServiceError("Cancelled while the local service was starting.", code="cancelled")
                if (returncode := self._process.poll()) is not None:
                    raise ServiceError(
                        f"The local service command exited with code {returncode} before answering; "
                        f"its log ({log_path}) ends: {_tail(log_path)}",
                        code="service_exited",
                    )
                try:
                    client.health()
                    return True
                except ServiceError as error:
                    if error.code not in ("unreachable", "timeout"):
                        raise
                time.sleep(POLL_INTERVAL_S)
            raise ServiceError(
                f"The local service did not answer at {client.base_url} within {wait_s:g} s of starting "
                f"(log: {log_path}); does the command's --host/--port match the service URL?",
                code="timeout",
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Terminates the process this add-on started (and waits, bounded), so no server outlives Blender."""
        with self._lock:
            process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def _start(command: str, log_path: Path) -> subprocess.Popen:
    try:
        arguments = shlex.split(command)
    except ValueError as error:
        raise ServiceError(
            f"The service command {command!r} cannot be parsed: {error}.", code="invalid_command"
        ) from None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            # No shell: the preference is a command line, split like a shell would, run as is.
            return subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as error:
            raise ServiceError(
                f"The service command {arguments[0]!r} could not be started: {error.strerror or error}.",
                code="invalid_command",
            ) from None


def _tail(log_path: Path) -> str:
    try:
        return log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip() or "(empty)"
    except OSError as error:
        return f"(unreadable: {error})"
