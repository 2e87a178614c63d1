"""Benchmark of the first-run tour: `python -m pipeline tour` on a fresh database, offline.

Acceptance (issue 13): it ends with a campaign holding outputs of both arms within 15
minutes on the 2-core development machine. Prints each step's start time as the tour
prints it, the total wall time and the load average at the start and the end (the
figure depends heavily on what else shares the cores).

    python bench/tour.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", default=None, help="work in this directory and keep it (default: a temporary one)")
    args = p.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="wl-tour-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WIZARDLAB_DATA_DIR": str(work / "data"), "HF_HUB_OFFLINE": "1",
           "WIZARDLAB_BASE_URL": "", "WIZARDLAB_MODEL": ""}
    load0 = os.getloadavg()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "tour", "--db", str(work / "tour.db")], cwd=REPO,
                          env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    sys.stderr.write(proc.stderr)
    sys.path.insert(0, str(REPO))
    from wizardlab.store import Store

    store = Store(work / "tour.db")
    exp = store.experiment("tour")
    sets = {s["name"]: s["n_outputs"] for s in store.list_output_sets()}
    print(f"tour: exit {proc.returncode}, {wall / 60:.1f} min wall ({proc.stdout.strip()}); "
          f"campaign items {len(store.campaign_items(exp['campaign_id'])) if exp and exp['campaign_id'] else 0}; "
          f"output sets {sets}; load average {load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end "
          f"(target: 15 min on 2 idle cores)")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
