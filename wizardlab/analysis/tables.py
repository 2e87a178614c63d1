"""Tables of a run's forest: counts per round, operation and rule, instruction length, difficulty.

The SQL is in `wizardlab.store.analysis` (one query per figure); this module only shapes
the rows into pandas frames for the Data tab, the command line and reports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OPERATION_ORDER = ["seed", "add_constraints", "deepening", "concretizing", "increase_reasoning",
                   "complicate_input", "in_breadth"]


def _rate(num, den) -> float | None:
    return round(num / den, 4) if den else None


def round_table(store, run_id: int) -> pd.DataFrame:
    """round, total, seed, kept, eliminated, pending, elimination_rate (effective status)."""
    rows = store.counts_by_round(run_id)
    for r in rows:
        r["elimination_rate"] = _rate(r["eliminated"], r["kept"] + r["eliminated"]) if r["round"] > 0 else None
    cols = ["round", "total", "seed", "kept", "eliminated", "pending", "eliminated_by_rules", "elimination_rate"]
    return pd.DataFrame(rows, columns=cols)


def operation_table(store, run_id: int) -> pd.DataFrame:
    rows = store.counts_by_operation(run_id)
    for r in rows:
        r["elimination_rate"] = _rate(r["eliminated"], r["kept"] + r["eliminated"])
        r["rules_elimination_rate"] = _rate(r["eliminated_by_rules"], r["total"] - r["pending"])
    cols = ["operation", "total", "kept", "eliminated", "pending", "elimination_rate", "eliminated_by_rules",
            "rules_elimination_rate"]
    return pd.DataFrame(rows, columns=cols)


def rule_table(store, run_id: int) -> pd.DataFrame:
    """rule, n (nodes failing it), rate (n / evolved nodes with a verdict), restored by curators."""
    rows = store.counts_by_rule(run_id)
    for r in rows:
        r["rate"] = _rate(r["n"], r["finished"])
    return pd.DataFrame(rows, columns=["rule", "n", "rate", "restored", "finished"])


def length_table(store, run_id: int, *, kept_only: bool = False) -> pd.DataFrame:
    """Instruction length in words per round: n, mean, median, p90, max."""
    hist = store.length_histogram(run_id, kept_only=kept_only)
    out = []
    for rnd in sorted({h["round"] for h in hist}):
        words = np.repeat([h["words"] for h in hist if h["round"] == rnd], [h["n"] for h in hist if h["round"] == rnd])
        out.append({"round": rnd, "n": int(words.size), "mean_words": round(float(words.mean()), 1),
                    "median_words": float(np.median(words)), "p90_words": float(np.percentile(words, 90)),
                    "max_words": int(words.max())})
    return pd.DataFrame(out, columns=["round", "n", "mean_words", "median_words", "p90_words", "max_words"])


def difficulty_table(store, run_id: int, include_eliminated: bool = False) -> pd.DataFrame:
    """Per round over the data set (seeds + kept after overrides), or every finished node."""
    rows = store.difficulty_by_round(run_id, data_only=not include_eliminated)
    for r in rows:
        r["mean"] = round(r["mean"], 2) if r["mean"] is not None else None
    return pd.DataFrame(rows, columns=["round", "scored", "mean", "min", "max"])


def difficulty_histogram(store, run_id: int, include_eliminated: bool = False) -> pd.DataFrame:
    """difficulty (1..10), round (as a label), n: ready for a stacked bar chart (data set by default)."""
    rows = store.difficulty_histogram(run_id, data_only=not include_eliminated)
    frame = pd.DataFrame(rows, columns=["round", "difficulty", "n"])
    frame["round"] = frame["round"].map(lambda r: f"round {r}")
    return frame
