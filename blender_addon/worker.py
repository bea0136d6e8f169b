"""Background jobs and the queue that carries their results to Blender's main thread.

A job runs on its own daemon thread and MUST NOT touch ``bpy``: Blender data is not thread-safe, and
add-ons that set properties or load previews from threads crash or show blank thumbnails. A job only
calls ``emit(kind, payload)``; the main-thread poller (``session.poll``) drains :attr:`Worker.messages`.
"""

from __future__ import annotations

import itertools
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .client import ServiceError

Emit = Callable[[str, Any], None]


@dataclass(frozen=True)
class Message:
    job_id: int
    kind: str
    payload: Any = None


@dataclass
class Job:
    id: int
    kind: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class Worker:
    """Runs ``fn(*args, emit=..., cancelled=...)`` per job; every job ends with an ``error`` or nothing, then ``done``.

    One thread per job, so that a cancelled request stuck in its timeout never delays the next one; a
    cancelled job's later messages are still queued, and the poller drops them by job id.
    """

    def __init__(self) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[..., None], *args: Any, **kwargs: Any) -> int:
        job = Job(next(self._ids), kind)
        job.thread = threading.Thread(
            target=self._run, args=(job, fn, args, kwargs), name=f"shape-search-{kind}-{job.id}", daemon=True
        )
        with self._lock:
            self._jobs[job.id] = job
        job.thread.start()
        return job.id

    def active(self, kind: str | None = None) -> list[int]:
        """Ids of the jobs neither finished nor cancelled (of one kind, or all)."""
        with self._lock:
            return [job.id for job in self._jobs.values() if not job.cancelled.is_set() and kind in (None, job.kind)]

    def is_active(self, job_id: int) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
        return job is not None and not job.cancelled.is_set()

    def cancel(self, kind: str | None = None) -> list[int]:
        """Cancels the running jobs (of one kind, or all) and returns their ids; their results are never applied."""
        with self._lock:
            jobs = [job for job in self._jobs.values() if kind in (None, job.kind)]
        for job in jobs:
            job.cancelled.set()
        return [job.id for job in jobs]

    def finish(self, job_id: int) -> None:
        """Forgets a job once the poller has seen its ``done``."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def drain(self, limit: int) -> list[Message]:
        """Up to ``limit`` queued messages, without blocking: the poller stays a short main-thread call."""
        messages = []
        for _ in range(limit):
            try:
                messages.append(self.messages.get_nowait())
            except queue.Empty:
                break
        return messages

    def shutdown(self, timeout: float = 2.0) -> None:
        """Cancels every job and waits a bounded time for their threads (daemon threads: none blocks Blender's exit)."""
        self.cancel()
        with self._lock:
            threads = [job.thread for job in self._jobs.values() if job.thread is not None]
            self._jobs.clear()
        for thread in threads:
            thread.join(timeout / max(len(threads), 1))

    def _run(self, job: Job, fn: Callable[..., None], args: tuple, kwargs: dict) -> None:
        def emit(kind: str, payload: Any = None) -> None:
            self.messages.put(Message(job.id, kind, payload))

        try:
            fn(*args, emit=emit, cancelled=job.cancelled, **kwargs)
        except (ServiceError, OSError) as error:  # the user's news, not a bug: a sentence, no traceback
            emit("error", str(error))
        except Exception as error:  # a bug: the traceback goes to the console, the user still gets the error
            traceback.print_exc()
            emit("error", f"Unexpected {type(error).__name__} in the {job.kind} job: {error}")
        finally:
            emit("done")
