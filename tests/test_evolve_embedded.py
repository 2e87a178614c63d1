"""Real evolutions on the embedded model (Gemma 3 270M in-process): offline, no key, no server."""

import json
import re
import subprocess
import sys
from pathlib import Path

from wizardlab.store import Store
from tests.conftest import REPO


def test_two_real_evolutions_on_the_embedded_model(tmp_path, shared_data):
    db, out = tmp_path / "w.db", tmp_path / "lineage.jsonl"
    argv = [sys.executable, "-m", "pipeline", "evolve", "--db", str(db), "--rounds", "1", "--limit", "2",
            "--seeds", str(shared_data / "seeds" / "alpaca_seed_tasks.jsonl"), "--max-new-tokens", "40", "--quiet"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "embedded Gemma 3 270M" in done.stderr
    load = re.search(r"the local model loaded in ([\d.]+) s", done.stdout)  # what its first calls waited for
    wall = re.search(r"run \d+: done in ([\d.]+)s", done.stdout)
    assert load and wall and 0 < float(load[1]) < float(wall[1])
    # the process closed its database on the way out (pipeline.__main__.exit_soon): the file alone holds it all
    assert db.is_file() and not Path(f"{db}-wal").exists()
    subprocess.run([sys.executable, "-m", "pipeline", "export", "--db", str(db), "--out", str(out)], cwd=REPO,
                   check=True, capture_output=True)
    nodes = [json.loads(line) for line in out.read_text().splitlines()]
    evolved = [n for n in nodes if n["round"] == 1]
    assert len(evolved) == 2
    for n in evolved:
        assert n["status"] in ("kept", "eliminated")
        assert n["status"] == "kept" or n["fail_rules"]
    store = Store(db)
    calls = store.query("SELECT backend, completion FROM llm_calls")
    assert calls and all(c["backend"].startswith("local|") for c in calls)
    raw = store.query("SELECT raw FROM nodes WHERE round = 1")
    assert all(json.loads(r["raw"]).get("evolve") is not None for r in raw)  # the model's own words are kept
