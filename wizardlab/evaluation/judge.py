"""The pairwise LLM judge: every campaign item asked in both orders; a flip counts as a tie.

Prompt templates are data files (`templates/judge_*.txt`, MT-bench's pairwise judge
wording with the WizardLM criteria); the verdict is the last "[[A]]", "[[B]]" or "[[C]]"
in the answer. Order 1 shows output a as Assistant A, order 2 shows output b as
Assistant A. Both verdicts are mapped to model terms; when they agree that is the label,
otherwise (a flip, or a tie in one order) the label is a tie. An unparseable answer is
counted and the item left unjudged (the raw text stays in `llm_calls`), so a rerun can
retry it with another salt.

Judgments are stored with annotator "llm:<model>", source "llm". A rerun skips items
already judged by that annotator (resumable). Running it as a job is `pipeline.judge`.
"""

from __future__ import annotations

import asyncio
import re
import time
from importlib import resources

from wizardlab.llm import LLMError, params
from wizardlab.llm.workers import pump

VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
FEW_SHOT = [
    {"role": "user", "content": "[User Question]\nWhat is 2 + 2?\n\n[The Start of Assistant A's Answer]\n5\n"
                                "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n4\n"
                                "[The End of Assistant B's Answer]"},
    {"role": "assistant", "content": "Assistant B gives the correct sum; Assistant A is wrong. [[B]]"},
]


def template(name: str) -> str:
    return resources.files("wizardlab.evaluation").joinpath("templates", name).read_text(encoding="utf-8")


def judge_messages(question: str, answer_a: str, answer_b: str, few_shot: bool = False) -> list[dict]:
    user = template("judge_user.txt").format(question=question, answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": template("judge_system.txt").strip()}, *(FEW_SHOT if few_shot else []),
            {"role": "user", "content": user}]


def parse_verdict(text: str) -> str | None:
    """"... [[A]]" -> "A"; the last verdict wins; None when there is none."""
    found = VERDICT.findall(text or "")
    return found[-1] if found else None


def combine(first: str, second: str) -> tuple[str, str]:
    """Verdicts of order 1 (a shown as A) and order 2 (b shown as A) -> (label, how).

    >>> combine("A", "B")
    ('a', 'consistent')
    >>> combine("A", "A")
    ('tie', 'flip')
    """
    one = {"A": "a", "B": "b", "C": "tie"}[first]
    two = {"A": "b", "B": "a", "C": "tie"}[second]
    if one == two:
        return one, "consistent"
    if "tie" in (one, two):
        return "tie", "half_tie"
    return "tie", "flip"


async def judge_item(client, item: dict, salt: str = "", sampling: dict | None = None) -> dict:
    """Ask both orders at once; returns {label, how, verdicts} or {error}. `sampling`: the user's
    generation settings (`wizardlab.llm.params`; defaults per backend for the "judge" stage)."""
    settings = params.for_backend("judge", client.backend, sampling)
    few = getattr(client.backend, "few_shot", False)
    orders = [judge_messages(item["prompt"], item["response_a"], item["response_b"], few),
              judge_messages(item["prompt"], item["response_b"], item["response_a"], few)]
    try:
        answers = await asyncio.gather(*(client.complete(m, purpose="judge", salt=salt or None,
                                                         **settings.kwargs()) for m in orders))
    except LLMError as exc:
        return {"error": str(exc)}
    verdicts = [parse_verdict(a.text) for a in answers]
    if None in verdicts:
        return {"error": "unparseable verdict", "verdicts": verdicts}
    label, how = combine(*verdicts)
    return {"label": label, "how": how, "verdicts": verdicts}


async def judge_campaign(store, client, campaign: dict, *, stop=lambda: False, on_progress=None,
                         limit: int | None = None, grace_s: float = 10.0, sampling: dict | None = None) -> dict:
    """Judge every unjudged item of `campaign`; returns the final progress dict."""
    annotator = f"llm:{client.backend.model}"
    done = store.judged_items(campaign["id"], annotator)
    todo = [i for i in store.campaign_items(campaign["id"]) if i["item_id"] not in done][:limit]
    progress = {"annotator": annotator, "done": 0, "total": len(todo), "already": len(done), "consistent": 0,
                "flips": 0, "half_ties": 0, "parse_failures": 0, "errors": 0, "started": time.time()}

    async def judge_one(item: dict) -> None:
        result = await judge_item(client, item, sampling=sampling)
        _record(store, campaign["id"], annotator, item, result, progress)
        if on_progress:
            on_progress(progress)

    progress["stopped"] = await pump(todo, judge_one, concurrency=max(1, client.concurrency // 2), stop=stop,
                                     grace_s=grace_s)
    return progress


def _record(store, campaign_id: int, annotator: str, item: dict, result: dict, progress: dict) -> None:
    if "error" in result:
        key = "parse_failures" if result.get("verdicts") else "errors"
        progress[key] += 1
        progress["last_error"] = result["error"]
        return
    how = result["how"]
    progress[{"consistent": "consistent", "flip": "flips", "half_tie": "half_ties"}[how]] += 1
    progress["done"] += 1
    rationale = f"order 1: [[{result['verdicts'][0]}]], order 2 (swapped): [[{result['verdicts'][1]}]] -> {how}"
    with store.tx() as conn:
        store.insert_judgment(conn, campaign_id, item["item_id"], annotator, result["label"], source="llm",
                              rationale=rationale)


def start_judging(store, settings, campaign: dict, *, created_by: str | None = None, log_dir,
                  mode: str = "pairwise") -> tuple[int, str]:
    """Start the LLM judge (the settings' LLM) on a campaign as a background job on the "llm"
    queue; mode "pairwise" (verdicts) or "score" (Vicuna-style 1-10 scores, see score_judge);
    returns (run id, job status)."""
    from wizardlab import jobs

    if mode not in ("pairwise", "score"):
        raise ValueError(f"unknown judge mode {mode!r}")
    run_id = store.create_run("judge", {"campaign": campaign["id"], "base_url": settings.base_url,
                                        "model": settings.model, "mode": mode},
                              name=f"LLM judge ({mode}) on {campaign['name']}", created_by=created_by)
    args = ["--campaign", campaign["id"], *(["--base-url", settings.base_url] if settings.base_url else []),
            *(["--model", settings.model] if settings.model else []), "--mode", mode]
    return run_id, jobs.launch(store, run_id, "judge", args, log_dir=log_dir, queue="llm")
