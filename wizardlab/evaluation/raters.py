"""Rater cards: how far each human rater's votes can be trusted, from the judgments alone.

One card per rater (`cards`): gold accuracy (items with a known answer, one side degraded),
self-consistency on repeats (the same pair shown again later with the sides swapped: a flip is
a different verdict in model terms), the share of non-tie votes for the left side, the tie
rate, the median seconds per item, agreement with the others' majority (leave-one-out,
`stats.annotator_report`), whether the rater is paused, and flags:

- `failed_gold`: gold accuracy below the campaign's threshold after `GOLD_MIN` gold items;
- `inconsistent`: flips on more than `FLIP_MAX` of at least `REPEAT_MIN` repeats;
- `left_side`: at least `LEFT_MAX` of at least `LEFT_MIN` non-tie votes for the left side;
- `too_fast`: median under `FAST_SECONDS` seconds per item;
- `paused`: paused on this campaign (by the gold check or by the lead).

Rows are `store.campaign_judgments` rows (model terms, with the item's `kind` and `repeat_of`).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import median

from wizardlab.evaluation import stats
from wizardlab.evaluation.campaigns import GOLD_MIN, GOLD_THRESHOLD

HUMAN = ("ui", "import")
FAST_SECONDS = 3.0
FLIP_MAX = 0.3
REPEAT_MIN = 3
LEFT_MAX = 0.9
LEFT_MIN = 10
SWAP = {"a": "b", "b": "a"}


def _term(label: str) -> str:
    return "tie" if stats.is_tie(label) else label


def cards(rows: list[dict], raters: dict | None = None, gold_threshold: float = GOLD_THRESHOLD) -> list[dict]:
    """One card per human rater, sorted by name (see the module docstring)."""
    raters = raters or {}
    human = [r for r in rows if r["source"] in HUMAN]
    by_rater = defaultdict(list)
    for r in human:
        by_rater[r["annotator"]].append(r)
    agree = {a["annotator"]: a for a in stats.annotator_report(
        [(r["item_id"], r["annotator"], _term(r["label"])) for r in human if r["kind"] == "real"])}
    out = []
    for name in sorted(set(by_rater) | set(raters)):
        card = _card(name, by_rater.get(name, []), agree.get(name, {}), raters.get(name, {}))
        card["flags"] = _flags(card, gold_threshold)
        out.append(card)
    return out


def _card(name: str, rs: list[dict], agree: dict, status: dict) -> dict:
    gold = [r["label"] == r["attention_label"] for r in rs if r["kind"] == "gold"]
    mine = {r["item_id"]: _term(r["label"]) for r in rs}
    flips = [SWAP.get(_term(r["label"]), "tie") != mine[r["repeat_of"]] for r in rs
             if r["kind"] == "repeat" and r["repeat_of"] in mine]
    sided = [r for r in rs if r["a_on_left"] is not None and _term(r["label"]) != "tie"]
    left = [(r["label"] == "a") == bool(r["a_on_left"]) for r in sided]
    secs = [r["seconds"] for r in rs if r["seconds"] is not None]
    share = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"annotator": name, "n": sum(r["kind"] == "real" for r in rs), "n_all": len(rs),
            "gold_n": len(gold), "gold_accuracy": share(gold), "repeat_n": len(flips), "flip_rate": share(flips),
            "left_n": len(left), "left_rate": share(left),
            "tie_rate": share([_term(r["label"]) == "tie" for r in rs]),
            "median_seconds": median(secs) if secs else None,
            "agreement": agree.get("agreement"), "n_compared": agree.get("n_compared", 0),
            "paused": status.get("status") == "paused", "pause_reason": status.get("reason")}


def _flags(c: dict, gold_threshold: float) -> list[str]:
    flags = []
    if c["gold_n"] >= GOLD_MIN and c["gold_accuracy"] < gold_threshold:
        flags.append("failed_gold")
    if c["repeat_n"] >= REPEAT_MIN and c["flip_rate"] > FLIP_MAX:
        flags.append("inconsistent")
    if c["left_n"] >= LEFT_MIN and c["left_rate"] >= LEFT_MAX:
        flags.append("left_side")
    if c["median_seconds"] is not None and c["median_seconds"] < FAST_SECONDS:
        flags.append("too_fast")
    if c["paused"]:
        flags.append("paused")
    return flags


def flagged(rater_cards: list[dict]) -> list[str]:
    return [c["annotator"] for c in rater_cards if c["flags"]]


NOTE = ("Rater card: gold accuracy on items with a known answer (one side degraded), flips on pairs shown again "
        "with the sides swapped, share of votes for the left side, ties, median seconds per item and agreement "
        "with the others' majority; a rater below the gold threshold is paused and their open items go back to "
        "the pool. Gold and repeated items never count in the results.")
