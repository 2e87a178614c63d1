"""Shared fixtures: a fresh SQLite file per test, the shared real data, the fake LLM server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("WIZARDLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def store(tmp_path):
    from wizardlab.store import Store

    s = Store(tmp_path / "test.db")
    yield s
    s.close()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
