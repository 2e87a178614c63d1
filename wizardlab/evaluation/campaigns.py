"""Blind pairwise campaigns: two or more output sets over their common prompts.

One pair or all pairs, k annotators per item, guidelines, optional "both bad" and
attention checks (a real answer against another prompt's answer: the real one must win).
"""

from __future__ import annotations

import itertools
import random

from wizardlab.errors import UserError

CRITERIA = ("relevance", "knowledge", "reasoning", "calculation", "accuracy")
DEFAULT_GUIDELINES = """Compare the two responses to the prompt and pick the better one.

Judge them on the WizardLM paper's criteria: **relevance** (does it answer what was asked),
**knowledge** (is the information right and sufficient), **reasoning** (are the steps sound),
**calculation** (are numbers and code correct) and **accuracy** (no errors or made-up facts).
Length alone is not quality. Choose *tie* when they are equally good. Skip what you cannot judge."""
ATTENTION_MODEL = "attention-check"


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
    bad = store.output_ids_by_prompt(sid, conn)
    return [(pid, outputs[pid], bad[pid], "a") for pid in chosen]


def require_campaign(store, ref) -> dict:
    c = store.campaign(ref)
    if c is None:
        raise UserError(f"campaign {ref!r} does not exist")
    return c
