"""The score-mode LLM judge: Vicuna's GPT-4 review protocol, as the WizardLM paper used it.

One review shows both answers and asks for a 1-10 score of each on the first line
(FastChat `fastchat/eval`, reviewer prompts "general", "coding" and "math"; wording in
`templates/review_*.txt`, Apache-2.0, chosen by the item's category or skill). Every item
is reviewed in both orders (order 1 shows output a as Assistant 1, order 2 shows output b
as Assistant 1) and each output's two scores are averaged, which cancels a judge's
preference for a position. The label is implied by the averaged scores (higher wins, equal
ties), so score-mode judgments also appear among the pairwise LLM judges of the report;
the scores feed the capacity ratio (`report.capacity`).

Judgments are stored with annotator "llm-score:<model>", source "llm", and both scores in
model terms. A review whose scores cannot be read is counted and the item left unjudged
(the raw text stays in `llm_calls`); a rerun skips items already judged (resumable).
Sampling follows Vicuna's reviewer settings (temperature 0.2, up to 1024 tokens) on an
endpoint and the "judge" stage's short budget in process (`wizardlab.llm.params`); the
user's "judge" overrides win over both.
"""

from __future__ import annotations

import asyncio
import re
import time

from dataclasses import replace

from wizardlab.evaluation.judge import template
from wizardlab.llm import LLMError, params
from wizardlab.llm.workers import pump

MODES = ("pairwise", "score")
REVIEW_TEMPERATURE = 0.2
REVIEW_MAX_TOKENS = 1024
NUMBER = r"(\d+(?:\.\d+)?)"
FIRST_LINE = re.compile(rf"^\s*\(?\s*{NUMBER}\s*(?:,|\s|/)\s*{NUMBER}\s*\)?\s*$")
TUPLE = re.compile(rf"\(\s*{NUMBER}\s*,\s*{NUMBER}\s*\)")


def annotator_of(model: str) -> str:
    return f"llm-score:{model}"


def review_kind(item: dict) -> str:
    """"coding", "math" or "general": Vicuna's reviewer for the item's category (or skill)."""
    text = f"{item.get('category') or ''} {item.get('skill') or ''}".lower()
    return "coding" if "cod" in text else "math" if "math" in text else "general"


def review_messages(item: dict, answer_1: str, answer_2: str) -> list[dict]:
    user = template("review_user.txt").format(question=item["prompt"], answer_1=answer_1, answer_2=answer_2,
                                              prompt=template(f"review_{review_kind(item)}.txt").strip())
    return [{"role": "system", "content": template("review_system.txt").strip()}, {"role": "user", "content": user}]


def parse_scores(text: str) -> tuple[float, float] | None:
    """The two 1-10 scores of a review: its first line ("8 9.5", "8, 9.5", "(8, 9.5)") as
    FastChat reads it, else the last "(x, y)" tuple (the math reviewer's format); None when
    neither is there or a score lies outside 0-10.

    >>> parse_scores("9 8.5\\nBoth are good")
    (9.0, 8.5)
    """
    lines = (text or "").strip().splitlines()
    found = FIRST_LINE.match(lines[0]) if lines else None
    if found is None:
        tuples = TUPLE.findall(text or "")
        found = tuples[-1] if tuples else None
        pair = tuple(float(x) for x in found) if found else None
    else:
        pair = (float(found.group(1)), float(found.group(2)))
    if pair is None or not all(0 <= x <= 10 for x in pair):
        return None
    return pair


def combine_scores(first: tuple[float, float], second: tuple[float, float]) -> tuple[str, float, float]:
    """Scores of order 1 (a shown first) and order 2 (b shown first) -> (label, score a, score b).

    >>> combine_scores((8, 6), (7, 9))
    ('a', 8.5, 6.5)
    """
    score_a, score_b = (first[0] + second[1]) / 2, (first[1] + second[0]) / 2
    label = "a" if score_a > score_b else "b" if score_b > score_a else "tie"
    return label, score_a, score_b


def review_sampling(backend, overrides: dict | None = None) -> params.Sampling:
    """Vicuna's reviewer settings on an endpoint, the "judge" stage's in process; then the user's
    "judge" overrides."""
    if getattr(backend, "in_process", False):
        return params.for_backend("judge", backend, overrides)
    base = params.Sampling(REVIEW_TEMPERATURE, None, REVIEW_MAX_TOKENS)
    mine = (overrides or {}).get("judge") or {}
    return replace(base, **{k: mine[k] for k in params.KEYS if k in mine})


async def review_item(client, item: dict, salt: str = "", sampling: dict | None = None) -> dict:
    """Review both orders at once; returns {label, score_a, score_b, orders} or {error}."""
    orders = [review_messages(item, item["response_a"], item["response_b"]),
              review_messages(item, item["response_b"], item["response_a"])]
    settings = review_sampling(client.backend, sampling).kwargs()
    try:
        answers = await asyncio.gather(*(client.complete(m, purpose="review", salt=salt or None, **settings)
                                         for m in orders))
    except LLMError as exc:
        return {"error": str(exc)}
    parsed = [parse_scores(a.text) for a in answers]
    if None in parsed:
        return {"error": "unreadable scores", "orders": parsed}
    label, score_a, score_b = combine_scores(*parsed)
    return {"label": label, "score_a": score_a, "score_b": score_b, "orders": parsed}


async def score_campaign(store, client, campaign: dict, *, stop=lambda: False, on_progress=None,
                         limit: int | None = None, grace_s: float = 10.0, sampling: dict | None = None) -> dict:
    """Review every item of `campaign` not yet scored by this model; returns the final progress dict
    (the same keys as the pairwise judge's: consistent = both orders prefer the same output,
    flips = they prefer different ones)."""
    annotator = annotator_of(client.backend.model)
    done = store.judged_items(campaign["id"], annotator)
    todo = [i for i in store.campaign_items(campaign["id"]) if i["item_id"] not in done][:limit]
    progress = {"annotator": annotator, "mode": "score", "done": 0, "total": len(todo), "already": len(done),
                "consistent": 0, "flips": 0, "half_ties": 0, "parse_failures": 0, "errors": 0,
                "started": time.time()}

    async def review_one(item: dict) -> None:
        result = await review_item(client, item, sampling=sampling)
        _record(store, campaign["id"], annotator, item, result, progress)
        if on_progress:
            on_progress(progress)

    progress["stopped"] = await pump(todo, review_one, concurrency=max(1, client.concurrency // 2), stop=stop,
                                     grace_s=grace_s)
    return progress


def _order_preference(scores: tuple[float, float], first_is_a: bool) -> str:
    x, y = scores if first_is_a else scores[::-1]
    return "a" if x > y else "b" if y > x else "tie"


def _record(store, campaign_id: int, annotator: str, item: dict, result: dict, progress: dict) -> None:
    if "error" in result:
        progress["parse_failures" if result.get("orders") else "errors"] += 1
        progress["last_error"] = result["error"]
        return
    one, two = (_order_preference(s, k == 0) for k, s in enumerate(result["orders"]))
    progress["consistent" if one == two else "half_ties" if "tie" in (one, two) else "flips"] += 1
    progress["done"] += 1
    (a1, b1), (b2, a2) = result["orders"]
    rationale = (f"order 1: {a1:g} / {b1:g}, order 2 (swapped): {b2:g} / {a2:g} -> "
                 f"a {result['score_a']:g}, b {result['score_b']:g}")
    with store.tx() as conn:
        store.insert_judgment(conn, campaign_id, item["item_id"], annotator, result["label"], source="llm",
                              rationale=rationale, scores=(result["score_a"], result["score_b"]))
