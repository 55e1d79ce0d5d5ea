"""Bounded waiting for analysis: at most `slots` analyses run at once per process, and a request that
cannot start within `queue_timeout` seconds gets a quick 503 (with Retry-After) instead of waiting on.

A request is turned away at once when the queue ahead of it already means a longer wait than
`queue_timeout` (estimated from the recent analysis time), so under heavy overload the 503s are
immediate and the server's threads are not all tied up waiting. docs/api.md: limits and answers.
"""
from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager


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
        self._free = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self.running = 0
        self.waiting = 0
        self.mean_seconds = 0.0          # moving average of one analysis, for the wait estimate

    def expected_wait(self, ahead: int | None = None) -> float:
        """Seconds until a request joining the queue now would start, roughly."""
        ahead = self.waiting if ahead is None else ahead
        if self.running < self.slots and ahead == 0:
            return 0.0
        return (ahead // self.slots + 1) * self.mean_seconds

    def saturated(self) -> bool:
        return self.expected_wait() > self.queue_timeout

    def retry_after(self) -> int:
        return max(1, min(60, math.ceil(self.expected_wait())))

    @contextmanager
    def admit(self):
        with self._lock:
            if self.saturated():
                raise Busy(f"The server is busy (about {self.expected_wait():.0f} s of analyses queued); "
                           f"try again shortly.", self.retry_after())
            self.waiting += 1
        try:
            admitted = self._free.acquire(timeout=self.queue_timeout)
        finally:
            with self._lock:
                self.waiting -= 1
        if not admitted:
            raise Busy(f"The server is busy: the analysis could not start within {self.queue_timeout:g} s; "
                       f"try again shortly.", self.retry_after())
        with self._lock:
            self.running += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            with self._lock:
                self.running -= 1
                self.mean_seconds = took if not self.mean_seconds else 0.8 * self.mean_seconds + 0.2 * took
            self._free.release()
