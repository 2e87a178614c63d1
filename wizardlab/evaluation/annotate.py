"""The annotator's loop: `next_item` / `submit` / `skip` / `undo`.

What these return holds only the prompt, "Response 1"/"Response 2" texts, an opaque
assignment id and progress: model names never leave this module towards the browser.
Left/right is decided by `a_on_left` from a hash of the campaign seed, item and annotator
(replayable, independent per annotator and item).
"""

from __future__ import annotations

import hashlib

from wizardlab.errors import UserError

MAX_RATIONALE = 2_000


def a_on_left(campaign_id: int, seed: int, item_id: int, annotator: str) -> bool:
    """Left/right for one annotator and item: a hash, so it is random-looking yet replayable."""
    digest = hashlib.sha256(f"{campaign_id}:{seed}:{item_id}:{annotator}".encode()).digest()
    return bool(digest[0] & 1)


def next_item(store, campaign: dict, annotator: str) -> dict | None:
    """The item to show: {assignment_id, prompt, response_1, response_2, progress}; None when finished
    (or paused: `is_paused`). Gold and repeat items look exactly like the others."""
    if campaign["status"] != "open":
        return None
    seed = campaign["config"].get("seed", 0)
    rank = routing_rank(store, campaign) if campaign["config"].get("routing") == "widest" else None
    aid = store.next_assignment(campaign["id"], annotator, lambda item: a_on_left(campaign["id"], seed, item, annotator),
                                pair_rank=rank)
    if aid is None:
        return None
    view = store.assignment_view(aid, annotator)
    view["progress"] = store.annotator_progress(campaign["id"], annotator)
    return view


def submit(store, campaign: dict, annotator: str, assignment_id: int, choice: str, *, request_id: str,
           rationale: str | None = None, seconds: float | None = None) -> dict:
    """Record a click (1 | 2 | tie | both_bad) for an assignment, exactly once."""
    if rationale and len(rationale) > MAX_RATIONALE:
        raise UserError(f"a rationale may have at most {MAX_RATIONALE:,} characters; this one has "
                        f"{len(rationale):,}: shorten it and click again")
    result = store.submit_judgment(assignment_id, annotator, choice, request_id=request_id, rationale=rationale,
                                   seconds=seconds)
    if not result["duplicate"]:
        check_gold(store, campaign, annotator)
    return result


def check_gold(store, campaign: dict, annotator: str) -> bool:
    """Pause `annotator` when their gold accuracy is below the campaign's threshold after GOLD_MIN
    gold items (their open items go back to the pool); True when this call paused them."""
    from wizardlab.evaluation.campaigns import GOLD_MIN, GOLD_THRESHOLD

    n, right = store.gold_tally(campaign["id"], annotator)
    threshold = campaign["config"].get("gold_threshold", GOLD_THRESHOLD)
    if n < GOLD_MIN or right / n >= threshold or is_paused(store, campaign, annotator):
        return False
    store.set_rater_status(campaign["id"], annotator, "paused", by="gold",
                           reason=f"gold accuracy {right}/{n} below {threshold:.0%}")
    return True


def is_paused(store, campaign: dict, annotator: str) -> bool:
    return store.raters(campaign["id"]).get(annotator, {}).get("status") == "paused"


def routing_rank(store, campaign: dict) -> dict[tuple[int, int], int]:
    """{(output set a, output set b): rank}, widest 95% interval of the win rate (ties half) first:
    a Wilson interval over the pair's human judgments so far (a pair with none is widest)."""
    from wizardlab.evaluation import stats

    widths = {}
    for p in store.pair_tallies(campaign["id"]):
        n = p["n"] or 0
        wins = (p["wins"] or 0) + (p["ties"] or 0) / 2
        widths[(p["set_a"], p["set_b"])] = stats.wilson_width(wins, n) if n else 1.0
    return {pair: r for r, pair in enumerate(sorted(widths, key=lambda k: (-widths[k], k)))}


def skip(store, annotator: str, assignment_id: int) -> None:
    store.skip_assignment(assignment_id, annotator)


def undo(store, campaign: dict, annotator: str) -> int | None:
    """Reopen the annotator's last judged item; returns its assignment id (None if nothing to undo)."""
    return store.undo_last_judgment(campaign["id"], annotator)


def annotator_campaigns(store) -> list[dict]:
    """Open campaigns as annotators see them: an id and a neutral title, never the admin's name."""
    return [{"id": c["id"], "title": f"Campaign {c['id']}"} for c in store.list_campaigns() if c["status"] == "open"]
