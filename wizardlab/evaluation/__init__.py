"""Blind pairwise evaluation: test sets, output sets, campaigns and the annotator's loop.

- `import_testset` / `import_outputs`: files into `prompts` and `output_sets`/`outputs`
  (one transaction each; bad input is one UserError line, nothing half-written).
- `create_campaign`: two or more output sets over their common prompts, one pair or all
  pairs, k annotators per item, guidelines, optional "both bad" and attention checks.
- `next_item` / `submit` / `skip` / `undo`: the annotator's loop. What they return holds
  only the prompt, "Response 1"/"Response 2" texts, an opaque assignment id and progress:
  model names never leave this module towards the browser.
Left/right is decided by `a_on_left` from a hash of the campaign seed, item and annotator
(replayable, independent per annotator and item). Statistics live in
`wizardlab.evaluation.report`; the LLM judge in `.judge`; generation in `.generate`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.testsets import (default_testset_name, load_output_rows, load_testset, sibling_questions)

CRITERIA = ("relevance", "knowledge", "reasoning", "calculation", "accuracy")
DEFAULT_GUIDELINES = """Compare the two responses to the prompt and pick the better one.

Judge them on the WizardLM paper's criteria: **relevance** (does it answer what was asked),
**knowledge** (is the information right and sufficient), **reasoning** (are the steps sound),
**calculation** (are numbers and code correct) and **accuracy** (no errors or made-up facts).
Length alone is not quality. Choose *tie* when they are equally good. Skip what you cannot judge."""
ATTENTION_MODEL = "attention-check"


# -- test sets and output sets -------------------------------------------------
def import_testset(store, path: str | Path, name: str | None = None) -> tuple[str, int]:
    """Load a WizardLM / Vicuna / seed-format file into `prompts`; returns (test set name, count)."""
    rows = load_testset(path)
    name = name or default_testset_name(path)
    store.upsert_prompts(name, rows)
    return name, len(rows)


def import_outputs(store, path: str | Path, *, testset: str | None = None, testset_file: str | Path | None = None,
                   model: str | None = None, name: str | None = None) -> list[dict]:
    """Import an output file as one output set per model; returns the created sets.

    Prompts are matched by id to `testset_file` (a Vicuna answer file finds its
    `../question.jsonl` by itself), else to the stored test set `testset`; without either
    the file must carry the prompt text and becomes its own test set.
    """
    path = Path(path)
    rows = load_output_rows(path, model)
    testset_file = testset_file or (None if testset else sibling_questions(path))
    with store.tx() as conn:
        testset, key_to_id = _prompt_ids(store, conn, path, rows, testset, testset_file)
        by_model: dict[str, list] = {}
        for r in rows:
            if r["prompt_key"] not in key_to_id:
                raise UserError(f"{path.name} line {r['line']}: prompt id {r['prompt_key']!r} is not in test set "
                                f"{testset!r}")
            by_model.setdefault(r["model"], []).append((key_to_id[r["prompt_key"]], r["output"]))
        if name and len(by_model) > 1:
            raise UserError(f"{path.name}: holds {len(by_model)} models; --name needs a file with one model")
        created = []
        for m, outputs in by_model.items():
            set_name = name or f"{testset}/{m}"
            sid = store.create_output_set(set_name, m, testset, "import", outputs=outputs, conn=conn)
            created.append({"id": sid, "name": set_name, "model": m, "testset": testset, "n_outputs": len(outputs)})
    return created


def _prompt_ids(store, conn, path: Path, rows: list[dict], testset: str | None, testset_file) -> tuple[str, dict]:
    if testset_file:
        testset = testset or default_testset_name(testset_file)
        return testset, store.upsert_prompts(testset, load_testset(testset_file), conn=conn)
    if testset and store.prompts_of(testset):
        return testset, {p["prompt_key"]: p["id"] for p in store.prompts_of(testset)}
    testset = testset or path.stem
    missing = next((r for r in rows if not r["prompt"]), None)
    if missing:
        raise UserError(f"{path.name} line {missing['line']}: missing field 'prompt' (or give --testset-file)")
    unique = {r["prompt_key"]: {"prompt_key": r["prompt_key"], "text": r["prompt"]} for r in rows}
    return testset, store.upsert_prompts(testset, unique.values(), conn=conn)


# -- campaigns -----------------------------------------------------------------
def create_campaign(store, name: str, output_sets: list, *, pairs: str = "one", k: int = 3,
                    guidelines: str = DEFAULT_GUIDELINES, allow_both_bad: bool = False, attention_checks: int = 0,
                    rationale: bool = False, seed: int = 0, created_by: str | None = None) -> int:
    """A campaign over the common prompts of `output_sets` (ids or names); returns its id."""
    if not name or not name.strip():
        raise UserError("a campaign needs a name")
    if k < 1:
        raise UserError(f"annotators per item must be at least 1, got {k}")
    sets = [_require_set(store, ref) for ref in output_sets]
    if len(sets) < 2 or len({s["id"] for s in sets}) != len(sets):
        raise UserError("a campaign needs at least two different output sets")
    if len({s["testset"] for s in sets}) != 1:
        raise UserError("output sets answer different test sets: " + ", ".join(f"{s['name']} ({s['testset']})"
                                                                              for s in sets))
    if pairs not in ("one", "all"):
        raise UserError(f"pairs must be 'one' or 'all', got {pairs!r}")
    outputs = [{o["prompt_id"]: o["id"] for o in store.outputs_of(s["id"])} for s in sets]
    common = sorted(set.intersection(*(set(o) for o in outputs)))
    if not common:
        raise UserError("the output sets have no prompt in common")
    combos = [(0, 1)] if pairs == "one" else list(itertools.combinations(range(len(sets)), 2))
    items = [(pid, outputs[i][pid], outputs[j][pid], None) for pid in common for i, j in combos]
    rng = random.Random(seed)
    rng.shuffle(items)
    config = {"output_sets": [s["id"] for s in sets], "pairs": pairs, "seed": seed, "rationale": bool(rationale),
              "criteria": list(CRITERIA), "n_common_prompts": len(common), "attention_checks": attention_checks}
    with store.tx() as conn:
        if attention_checks:
            items += _attention_items(store, conn, name, sets[0], outputs[0], common, attention_checks, rng)
            rng.shuffle(items)
        return store.create_campaign(name.strip(), guidelines=guidelines, k=k, allow_both_bad=allow_both_bad,
                                     config=config, created_by=created_by, items=items, conn=conn)


def _require_set(store, ref) -> dict:
    s = store.output_set(ref)
    if s is None:
        raise UserError(f"output set {ref!r} does not exist")
    return s


def _attention_items(store, conn, name: str, first: dict, outputs: dict, common: list, n: int,
                     rng: random.Random) -> list[tuple]:
    """n items pairing a real answer with the answer to another prompt: the real one (a) must win."""
    if len(common) < 2:
        raise UserError("attention checks need at least two prompts")
    chosen = rng.sample(common, min(n, len(common)))
    texts = {o["prompt_id"]: o["text"] for o in store.outputs_of(first["id"])}
    wrong = [(pid, texts[common[(common.index(pid) + 1) % len(common)]]) for pid in chosen]
    sid = store.create_output_set(f"{name} / attention checks", ATTENTION_MODEL, first["testset"], "import",
                                  outputs=wrong, conn=conn)
    bad = {r["prompt_id"]: r["id"] for r in conn.execute("SELECT id, prompt_id FROM outputs WHERE output_set_id = ?",
                                                         (sid,)).fetchall()}
    return [(pid, outputs[pid], bad[pid], "a") for pid in chosen]


def require_campaign(store, ref) -> dict:
    c = store.campaign(ref)
    if c is None:
        raise UserError(f"campaign {ref!r} does not exist")
    return c


# -- the annotator's loop ------------------------------------------------------
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


# -- background work -------------------------------------------------------------
async def run_workers(n: int, worker, stop, poll_s: float = 0.2) -> bool:
    """Run `n` copies of `worker()` until they finish or `stop()` turns true; then cancel them.

    In-flight LLM calls are abandoned on stop (their answers are not stored), so a SIGTERM
    ends a job within `poll_s` even when the endpoint hangs. Returns True when stopped.
    """
    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, n))]
    while not all(t.done() for t in tasks):
        if stop():
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return True
        await asyncio.wait(tasks, timeout=poll_s)
    for t in tasks:
        t.result()  # re-raise a worker's error
    return False
