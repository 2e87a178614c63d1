"""Tables of a run's forest: counts per round, operation and rule, instruction length, difficulty.

The SQL is in `wizardlab.store.analysis` (one query per figure); this module only shapes
the rows into pandas frames for the Data tab, the command line and reports.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np
import pandas as pd


OPERATION_ORDER = ["seed", "add_constraints", "deepening", "concretizing", "increase_reasoning",
                   "complicate_input", "in_breadth"]


_STATS: OrderedDict = OrderedDict()  # (db path, run id) -> (change stamp, figures)
_STATS_LOCK = threading.Lock()
_STATS_MAX = 16
SETTLE_S = 2.0  # a stamp younger than this may still gain writes within its millisecond: not cached


def run_stats(store, run_id: int, include_eliminated: bool = False) -> dict:
    """Every figure of a run's Data tab, each computed by one query, and cached until a node of the
    run changes (its change stamp moves): rounds, ops, rules, lengths, diff_summary, and diff_hist and
    diff_table over the data set (seeds + kept) or, `include_eliminated`, every finished node."""
    stamp, key = store.change_stamp(run_id), (store.path, int(run_id), bool(include_eliminated))
    with _STATS_LOCK:
        hit = _STATS.get(key)
        if hit is not None and stamp is not None and hit[0] == stamp:
            _STATS.move_to_end(key)
            return hit[1]
    groups = store.status_groups(run_id)  # one pass for rounds, operations, rules and the difficulty figures
    stats = {"rounds": round_table(store, run_id, groups), "ops": operation_table(store, run_id, groups),
             "rules": rule_table(store, run_id, groups), "lengths": length_table(store, run_id),
             "diff_summary": store.difficulty_summary(run_id, groups),
             "diff_hist": difficulty_histogram(store, run_id, include_eliminated),
             "diff_table": difficulty_table(store, run_id, include_eliminated, groups)}
    settled = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - SETTLE_S))
    if stamp is not None and stamp < settled:
        with _STATS_LOCK:
            _STATS[key] = (stamp, stats)
            while len(_STATS) > _STATS_MAX:
                _STATS.popitem(last=False)
    return stats


def _rate(num, den) -> float | None:
    return round(num / den, 4) if den else None


def round_table(store, run_id: int, groups: list[dict] | None = None) -> pd.DataFrame:
    """round, total, seed, kept, eliminated, pending, elimination_rate (effective status)."""
    rows = store.counts_by_round(run_id, groups)
    for r in rows:
        r["elimination_rate"] = _rate(r["eliminated"], r["kept"] + r["eliminated"]) if r["round"] > 0 else None
    cols = ["round", "total", "seed", "kept", "eliminated", "pending", "eliminated_by_rules", "elimination_rate"]
    return pd.DataFrame(rows, columns=cols)


def operation_table(store, run_id: int, groups: list[dict] | None = None) -> pd.DataFrame:
    rows = store.counts_by_operation(run_id, groups)
    for r in rows:
        r["elimination_rate"] = _rate(r["eliminated"], r["kept"] + r["eliminated"])
        r["rules_elimination_rate"] = _rate(r["eliminated_by_rules"], r["total"] - r["pending"])
    cols = ["operation", "total", "kept", "eliminated", "pending", "elimination_rate", "eliminated_by_rules",
            "rules_elimination_rate"]
    return pd.DataFrame(rows, columns=cols)


def rule_table(store, run_id: int, groups: list[dict] | None = None) -> pd.DataFrame:
    """rule, n (nodes failing it), rate (n / evolved nodes with a verdict), restored by curators."""
    rows = store.counts_by_rule(run_id, groups)
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


def difficulty_table(store, run_id: int, include_eliminated: bool = False,
                     groups: list[dict] | None = None) -> pd.DataFrame:
    """Per round over the data set (seeds + kept after overrides), or every finished node."""
    rows = store.difficulty_by_round(run_id, data_only=not include_eliminated, groups=groups)
    for r in rows:
        r["mean"] = round(r["mean"], 2) if r["mean"] is not None else None
    return pd.DataFrame(rows, columns=["round", "scored", "mean", "min", "max"])


def difficulty_histogram(store, run_id: int, include_eliminated: bool = False) -> pd.DataFrame:
    """difficulty (1..10), round (as a label), n: ready for a stacked bar chart (data set by default)."""
    rows = store.difficulty_histogram(run_id, data_only=not include_eliminated)
    frame = pd.DataFrame(rows, columns=["round", "difficulty", "n"])
    frame["round"] = frame["round"].map(lambda r: f"round {r}")
    return frame
