"""Shared fixtures: a fresh SQLite file per test, the shared real data, the fake LLM server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# tests load a local model in their own process (and the commands they run in theirs) unless a test
# asks for a model server (tests/test_model_server.py): no server outlives the suite
os.environ.setdefault("WIZARDLAB_KEEP_MODEL_S", "0")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("WIZARDLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def store(tmp_path):
    from wizardlab.store import Store

    s = Store(tmp_path / "test.db")
    yield s
    s.close()


IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip is an error: a missing ../shared/data or Chromium must fail the run,
    not let it go green with half the suite unrun. Locally a skip stays a skip, with its reason."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: this test may not be skipped ({reason})"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
