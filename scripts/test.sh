#!/usr/bin/env bash
# Install everything into .venv (torch first, CPU build) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -r requirements.txt -r requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
