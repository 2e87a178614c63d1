"""Docs as tests: every stage runs `--help`, and the README lists every stage with its help text."""

import subprocess
import sys

import pytest

from pipeline import STAGES
from tests.conftest import REPO


def test_root_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for name in STAGES:
        assert name in out.stdout


def test_unknown_stage_is_one_clear_error():
    out = subprocess.run([sys.executable, "-m", "pipeline", "evolv"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown stage 'evolv'" in out.stderr


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_help(stage):
    from pipeline.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main([stage, "--help"])
    assert exit_.value.code == 0


@pytest.mark.parametrize("stage", list(STAGES))
def test_readme_documents_stage(stage):
    readme = (REPO / "README.md").read_text()
    assert f"| `{stage}` | {STAGES[stage][1]} |" in readme
    assert f"python -m pipeline {stage}" in readme
