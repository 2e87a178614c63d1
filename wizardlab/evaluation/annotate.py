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
    """The item to show: {assignment_id, prompt, response_1, response_2, progress}; None when finished."""
    if campaign["status"] != "open":
        return None
    seed = campaign["config"].get("seed", 0)
    aid = store.next_assignment(campaign["id"], annotator, lambda item: a_on_left(campaign["id"], seed, item, annotator))
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
    return store.submit_judgment(assignment_id, annotator, choice, request_id=request_id, rationale=rationale,
                                 seconds=seconds)


def skip(store, annotator: str, assignment_id: int) -> None:
    store.skip_assignment(assignment_id, annotator)


def undo(store, campaign: dict, annotator: str) -> int | None:
    """Reopen the annotator's last judged item; returns its assignment id (None if nothing to undo)."""
    return store.undo_last_judgment(campaign["id"], annotator)


def annotator_campaigns(store) -> list[dict]:
    """Open campaigns as annotators see them: an id and a neutral title, never the admin's name."""
    return [{"id": c["id"], "title": f"Campaign {c['id']}"} for c in store.list_campaigns() if c["status"] == "open"]
