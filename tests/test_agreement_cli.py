"""`python -m pipeline agreement` as a real subprocess: PandaLM's published kappas,
llmfao crowd agreement against a brute-force oracle, the table, and bad input."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wizardlab.evaluation.stats import AGREEMENT_KEYS

REPO = Path(__file__).resolve().parent.parent


def run_agreement(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "agreement", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def pandalm_to_csv(src: Path, dst: Path) -> Path:
    """Independent conversion (json + csv only): one row per item and annotator."""
    vote = {0: "tie", 1: "response1", 2: "response2"}
    with dst.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item", "annotator", "label"])
        for entry in json.loads(src.read_text()):
            for k in (1, 2, 3):
                writer.writerow([entry["idx"], f"annotator{k}", vote[entry[f"annotator{k}"]]])
    return dst


def test_pandalm_published_kappas(shared_data, tmp_path):
    path = pandalm_to_csv(shared_data / "human_judgments" / "pandalm" / "testset-v1.json", tmp_path / "pandalm.csv")
    proc = run_agreement("--judgments", path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1
    result = json.loads(proc.stdout)
    assert tuple(result) == AGREEMENT_KEYS
    assert (result["n_items"], result["n_annotators"], result["n_judgments"]) == (999, 3, 2997)
    kappas = {(p["a"], p["b"]): p["kappa"] for p in result["cohen_kappa_pairs"]}
    published = {("annotator1", "annotator2"): (0.85, 0.852), ("annotator1", "annotator3"): (0.88, 0.879),
                 ("annotator2", "annotator3"): (0.86, 0.862)}
    for pair, (readme, recomputed) in published.items():
        assert round(kappas[pair], 2) == readme and round(kappas[pair], 3) == recomputed
    assert round(result["fleiss_kappa"], 3) == 0.864
    assert round(result["krippendorff_alpha"], 3) == 0.864


def brute_force_percent(rows: list[dict]) -> tuple[float, float]:
    """MT-bench percent agreement straight from the raw crowd CSV, labels as winning model."""
    by_pair: dict[str, list[str]] = {}
    for r in rows:
        winner = {"left": r["left"], "right": r["right"]}.get(r["winner"], "tie")
        by_pair.setdefault(r["id"], []).append(winner)
    pairs = [(x, y) for votes in by_pair.values() for x, y in itertools.combinations(votes, 2)]
    no_ties = [(x, y) for x, y in pairs if "tie" not in (x, y)]
    return (sum(x == y for x, y in pairs) / len(pairs), sum(x == y for x, y in no_ties) / len(no_ties))


def test_llmfao_crowd_agreement(shared_data):
    path = shared_data / "human_judgments" / "llmfao" / "crowd-comparisons.csv"
    proc = run_agreement("--judgments", path, "--json", "--format", "llmfao")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["n_items"], result["n_annotators"], result["n_judgments"]) == (2139, 124, 8931)
    with path.open(newline="") as fh:
        with_ties, without = brute_force_percent(list(csv.DictReader(fh)))
    assert result["percent_agreement"] == pytest.approx(with_ties)
    assert result["percent_agreement_without_ties"] == pytest.approx(without)
    assert result["fleiss_kappa"] is None  # 1 to 5 votes per pair
    assert 0 < result["krippendorff_alpha"] < 1
    assert all(p["n"] >= 2 for p in result["cohen_kappa_pairs"])


def test_table_output_and_any_labels(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("item,annotator,label\n" + "".join(
        f"q{i},{who},{lab}\n" for i, labs in enumerate([("good", "good"), ("bad", "bad"), ("good", "Tie"), ("bad", "good")])
        for who, lab in zip(("ann", "bob"), labs)))
    proc = run_agreement("--judgments", path)
    assert proc.returncode == 0, proc.stderr
    assert "items 4  annotators 2  judgments 8" in proc.stdout
    assert "percent agreement (MT-bench, pairs of judgments)  50.0%" in proc.stdout
    assert "percent agreement without ties                    66.7%" in proc.stdout
    assert "Fleiss' kappa" in proc.stdout and "ann" in proc.stdout


@pytest.mark.parametrize("content, message", [
    ("item,annotator,label\nq1,a1,x\nq1,a2,\n", "judgments.csv line 3: missing field 'label'"),
    ("", "judgments.csv: file is empty"),
    ("question,who,verdict\nq1,a1,x\n", "judgments.csv line 1: unknown judgments format"),
    (b"item,annotator,label\nq1,a1,x\nq1,\xff,y\n", "judgments.csv line 3: not UTF-8 text"),
    ("item,annotator,label\nq1,a1,x\nq1,a1,y\n", "judgments.csv line 3: annotator 'a1' already judged item 'q1'"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "judgments.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = run_agreement("--judgments", path, "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
