"""Bounded waiting for analysis: at most `slots` analyses run at once per process, on `slots` dedicated
threads, and a request that cannot start within `queue_timeout` seconds gets a quick 503 (with
Retry-After) instead of waiting on.

A request is turned away at once when the queue ahead of it already means a longer wait than
`queue_timeout` (estimated from the recent analysis time), so under heavy overload the 503s are
immediate and the server's request threads are not all tied up waiting.

Analyses run on the gate's own threads, not on the server's request threads: per-thread state (the Haar
cascade, TensorFlow's and malloc's per-thread arenas) then exists `slots` times per process, however many
request threads gunicorn runs. docs/api.md: limits and answers.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The server cannot analyse this request now: 503 with Retry-After (JSON on /api/, a page elsewhere)."""

    def __init__(self, message: str, retry_after: int, code: str = "overloaded"):
        super().__init__(message)
        self.message, self.retry_after, self.code = message, retry_after, code


class AdmissionGate:
    def __init__(self, slots: int, queue_timeout: float):
        if slots < 1:
            raise ValueError(f"VISAGE_ANALYSIS_SLOTS must be at least 1, got {slots}")
        self.slots = slots
        self.queue_timeout = queue_timeout
        # Threads start on first use, so a gate built before gunicorn forks its workers is safe.
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="analysis")
        self._lock = threading.Lock()
        self.running = 0
        self.waiting = 0
        self.mean_seconds = 0.0          # moving average of one analysis, for the wait estimate

    def expected_wait(self) -> float:
        """Seconds until a request joining the queue now would start, roughly."""
        if self.running < self.slots and self.waiting == 0:
            return 0.0
        return (self.waiting // self.slots + 1) * self.mean_seconds

    def saturated(self) -> bool:
        return self.expected_wait() > self.queue_timeout

    def retry_after(self) -> int:
        return max(1, min(60, math.ceil(self.expected_wait())))

    def run(self, analysis: Callable[[], T]) -> T:
        """analysis() on an analysis thread once one is free; Busy if none frees up within queue_timeout."""
        with self._lock:
            if self.saturated():
                raise Busy(f"The server is busy (about {self.expected_wait():.0f} s of analyses queued); "
                           f"try again shortly.", self.retry_after())
            self.waiting += 1
        future = self._pool.submit(self._timed, analysis)
        try:
            return future.result(timeout=self.queue_timeout)
        except FutureTimeout:
            if future.cancel():          # still queued: give up its place
                with self._lock:
                    self.waiting -= 1
                raise Busy(f"The server is busy: the analysis could not start within {self.queue_timeout:g} s; "
                           f"try again shortly.", self.retry_after()) from None
            return future.result()       # it started just now; its own deadline bounds it

    def _timed(self, analysis: Callable[[], T]) -> T:
        with self._lock:
            self.waiting -= 1
            self.running += 1
        start = time.perf_counter()
        try:
            return analysis()
        finally:
            took = time.perf_counter() - start
            with self._lock:
                self.running -= 1
                self.mean_seconds = took if not self.mean_seconds else 0.8 * self.mean_seconds + 0.2 * took
