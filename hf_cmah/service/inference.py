"""Model work off the event loop: a fixed pool of worker threads behind a bounded queue.

Encoding an image takes tens of milliseconds of torch time; run on the event loop it would
stall every other request. Requests beyond ``workers + queue_size`` in flight are refused
at once with 503 + ``Retry-After`` instead of piling up. The in-flight count is only touched
on the event loop's thread, so it needs no lock.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .errors import BusyError

T = TypeVar("T")


class InferencePool:
    """Runs blocking calls in ``workers`` threads, at most ``workers + queue_size`` at a time."""

    def __init__(self, workers: int, queue_size: int, torch_threads: int | None = None):
        import torch

        # Set once, before any worker runs: the intra-op pool is shared by every worker thread.
        torch.set_num_threads(torch_threads or max(1, (os.cpu_count() or 1) // workers))
        self.workers = workers
        self.capacity = workers + queue_size
        self.in_flight = 0
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hf-cmah-inference")

    async def run(self, function: Callable[..., T], *args) -> T:
        """``function(*args)`` in a worker thread; BusyError when the queue is full."""
        if self.in_flight >= self.capacity:
            raise BusyError(
                f"the server is busy ({self.in_flight} requests in flight); retry in a second",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


__all__ = ["InferencePool"]
