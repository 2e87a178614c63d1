"""CI rules for the suite itself: under CI=true a skipped test (missing ../shared/data or Chromium) fails."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(env_extra: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "WIZARDLAB_SHARED_DATA": "/nonexistent/shared/data", **env_extra}
    env.pop("CI", None) if "CI" not in env_extra else None
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_seeds.py::test_limit"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_missing_data_dir_skips_locally_but_fails_under_ci():
    local = _run({})
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    ci = _run({"CI": "true"})
    assert ci.returncode != 0 and "CI=true: this test may not be skipped" in ci.stdout, ci.stdout
