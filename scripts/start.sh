#!/usr/bin/env bash
# Install everything into .venv (torch first, CPU build) and start the app on its embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -r requirements.txt
exec .venv/bin/python app.py "$@"
