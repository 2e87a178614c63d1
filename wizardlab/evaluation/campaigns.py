"""Blind pairwise campaigns: two or more output sets over their common prompts.

One pair, all pairs, or every set vs the first (`pairs="baseline"`), k annotators per item, guidelines, optional "both bad" and
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
PAIRS = ("one", "all", "baseline")  # the first two sets; every pair; every set vs the first
MAX_NAME = 200  # campaign and output set names
MAX_GUIDELINES = 20_000


def check_length(what: str, value: str, limit: int) -> str:
    """`value`, or a UserError saying how long `what` may be and how long it is."""
    if len(value) > limit:
        raise UserError(f"{what}: at most {limit:,} characters, got {len(value):,}")
    return value


def create_campaign(store, name: str, output_sets: list, *, pairs: str = "one", k: int = 3,
                    guidelines: str = DEFAULT_GUIDELINES, allow_both_bad: bool = False, attention_checks: int = 0,
                    rationale: bool = False, seed: int = 0, created_by: str | None = None) -> int:
    """A campaign over the common prompts of `output_sets` (ids or names); returns its id."""
    if not name or not name.strip():
        raise UserError("a campaign needs a name")
    check_length("campaign name", name.strip(), MAX_NAME)
    check_length("guidelines", guidelines or "", MAX_GUIDELINES)
    if k < 1:
        raise UserError(f"annotators per item must be at least 1, got {k}")
    sets = [_require_set(store, ref) for ref in output_sets]
    if len(sets) < 2 or len({s["id"] for s in sets}) != len(sets):
        raise UserError("a campaign needs at least two different output sets")
    if len({s["testset"] for s in sets}) != 1:
        raise UserError("output sets answer different test sets: " + ", ".join(f"{s['name']} ({s['testset']})"
                                                                              for s in sets))
    if pairs not in PAIRS:
        raise UserError(f"pairs must be one of {', '.join(PAIRS)}, got {pairs!r}")
    outputs = [{o["prompt_id"]: o["id"] for o in store.outputs_of(s["id"])} for s in sets]
    common = sorted(set.intersection(*(set(o) for o in outputs)))
    if not common:
        raise UserError("the output sets have no prompt in common")
    combos = {"one": [(0, 1)], "baseline": [(0, j) for j in range(1, len(sets))],
              "all": list(itertools.combinations(range(len(sets)), 2))}[pairs]
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


def set_status(store, ref, status: str) -> dict:
    """Close (`closed`: annotators no longer see it) or reopen (`open`) a campaign; returns it."""
    if status not in ("open", "closed"):
        raise UserError(f"status must be 'open' or 'closed', got {status!r}")
    c = require_campaign(store, ref)
    store.set_campaign_status(c["id"], status)
    return {**c, "status": status}


def assign_annotators(store, ref, names, password: str | None = None) -> list[dict]:
    """Create annotator accounts for a campaign's people who have none yet.

    `names`: a list or a comma/space/newline-separated string. Returns one row per name:
    {"username", "created", "password"} (the password only for accounts created here, random
    when `password` is not given, so the admin can hand it over once).
    """
    import secrets

    from wizardlab import auth

    require_campaign(store, ref)
    if isinstance(names, str):
        names = names.replace(",", " ").split()
    names = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    if not names:
        raise UserError("give one or more annotator user names")
    for name in names:
        auth.check_username(name)
    if password:
        auth.check_password(password)
    rows = []
    for name in names:
        if store.get_user(name):
            rows.append({"username": name, "created": False, "password": None})
            continue
        pw = password or secrets.token_urlsafe(9)
        auth.add_user(store, name, pw, "annotator")
        rows.append({"username": name, "created": True, "password": pw})
    return rows
