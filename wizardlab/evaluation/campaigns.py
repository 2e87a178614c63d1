"""Blind pairwise campaigns: two or more output sets over their common prompts.

One pair, all pairs, or every set vs the first (`pairs="baseline"`), k annotators per item, guidelines, optional "both bad" and
attention checks (a real answer against another prompt's answer: the real one must win).

Verdicts you can trust (issue 14), all optional:
- gold items (`gold_share` of the real items): a real answer against a degraded copy (truncated
  to a third, an off-topic answer from another model to a far prompt, or the same model's answer
  to the next prompt); they look like any item; each rater's gold accuracy is kept and a rater
  below `gold_threshold` after `GOLD_MIN` gold items is paused (open items back to the pool);
- repeat items (`repeat_share`): a real item shown again to the same rater later with the sides
  swapped, for self-consistency;
- identity leaks: every output is scanned (`identity`) at creation; a campaign with hits waits in
  status `review` until each is edited, dropped or kept (`resolve_identity`);
- `routing="widest"`: the next real item comes from the model pair whose interval is widest.
Gold and repeat items never count in results.
"""

from __future__ import annotations

import itertools
import random

from wizardlab.errors import UserError
from wizardlab.evaluation import identity

CRITERIA = ("relevance", "knowledge", "reasoning", "calculation", "accuracy")
DEFAULT_GUIDELINES = """Compare the two responses to the prompt and pick the better one.

Judge them on the WizardLM paper's criteria: **relevance** (does it answer what was asked),
**knowledge** (is the information right and sufficient), **reasoning** (are the steps sound),
**calculation** (are numbers and code correct) and **accuracy** (no errors or made-up facts).
Length alone is not quality. Choose *tie* when they are equally good. Skip what you cannot judge."""
ATTENTION_MODEL = "attention-check"
PAIRS = ("one", "all", "baseline")  # the first two sets; every pair; every set vs the first
GOLD_MODEL = "gold-check"
GOLD_KINDS = ("truncated", "off_topic", "other_answer")
GOLD_MIN = 4  # gold items judged before a rater can be paused
GOLD_THRESHOLD = 0.7
ROUTINGS = ("order", "widest")
MAX_NAME = 200  # campaign and output set names
MAX_GUIDELINES = 20_000


def check_length(what: str, value: str, limit: int) -> str:
    """`value`, or a UserError saying how long `what` may be and how long it is."""
    if len(value) > limit:
        raise UserError(f"{what}: at most {limit:,} characters, got {len(value):,}")
    return value


def create_campaign(store, name: str, output_sets: list, *, pairs: str = "one", k: int = 3,
                    guidelines: str = DEFAULT_GUIDELINES, allow_both_bad: bool = False, attention_checks: int = 0,
                    rationale: bool = False, seed: int = 0, created_by: str | None = None, gold_share: float = 0.0,
                    repeat_share: float = 0.0, gold_threshold: float = GOLD_THRESHOLD, routing: str = "order") -> int:
    """A campaign over the common prompts of `output_sets` (ids or names); returns its id. With identity
    leaks in its outputs it starts in status `review` (see the module docstring)."""
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
    _check_trust_options(gold_share, repeat_share, gold_threshold, routing)
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
              "criteria": list(CRITERIA), "n_common_prompts": len(common), "attention_checks": attention_checks,
              "gold_share": gold_share, "repeat_share": repeat_share, "gold_threshold": gold_threshold,
              "routing": routing}
    n_real = len(items)
    with store.tx() as conn:
        if attention_checks:
            items += _attention_items(store, conn, name, sets[0], outputs[0], common, attention_checks, rng)
        if gold_share:
            items += _gold_items(store, conn, name, sets, common, max(1, round(gold_share * n_real)), rng)
        rng.shuffle(items)
        cid = store.create_campaign(name.strip(), guidelines=guidelines, k=k, allow_both_bad=allow_both_bad,
                                    config=config, created_by=created_by, items=items, conn=conn)
        if repeat_share:
            real = store.real_item_ids(conn, cid)
            store.add_repeat_items(conn, cid, rng.sample(real, min(len(real), max(1, round(repeat_share * n_real)))))
        own = [s["model"] for s in sets]
        if store.add_identity_hits(conn, cid, identity.scan(store.campaign_outputs(conn, cid), own)):
            store.set_campaign_status_in(conn, cid, "review")
        return cid


def _check_trust_options(gold_share: float, repeat_share: float, gold_threshold: float, routing: str) -> None:
    for what, v in (("gold share", gold_share), ("repeat share", repeat_share)):
        if not 0 <= v <= 0.5:
            raise UserError(f"{what} must be between 0 and 0.5 (a share of the items), got {v}")
    if not 0 <= gold_threshold <= 1:
        raise UserError(f"gold threshold must be between 0 and 1, got {gold_threshold}")
    if routing not in ROUTINGS:
        raise UserError(f"routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")


def _gold_items(store, conn, name: str, sets: list[dict], common: list, n: int, rng: random.Random) -> list[tuple]:
    """n gold items: a real answer (set taken in turn) against a degraded copy whose kind cycles
    through GOLD_KINDS; the real one (a) must win. Degraded answers go to a `gold-check` output set."""
    if len(common) < 3:
        raise UserError("gold items need at least three common prompts")
    texts = [{o["prompt_id"]: (o["id"], o["text"]) for o in store.outputs_of(s["id"])} for s in sets]
    chosen, bad, items = rng.sample(common, min(n, len(common))), [], []
    for j, pid in enumerate(chosen):
        side = j % len(sets)
        good_id, good = texts[side][pid]
        kind, text = _degrade(GOLD_KINDS[j % len(GOLD_KINDS)], good, pid, common, texts, side)
        if text.strip() and text.strip() != good.strip():
            bad.append((pid, text))
            items.append((pid, good_id, kind))
    sid = store.create_output_set(f"{name} / gold", GOLD_MODEL, sets[0]["testset"], "import", outputs=bad, conn=conn)
    ids = store.output_ids_by_prompt(sid, conn)
    return [(pid, good_id, ids[pid], "a", "gold", kind) for pid, good_id, kind in items]


def _degrade(kind: str, good: str, pid, common: list, texts: list[dict], side: int) -> tuple[str, str]:
    """(kind, degraded text); a too-short answer is replaced by another answer instead of truncated."""
    i = common.index(pid)
    words = good.split(" ")
    if kind == "truncated" and len(words) >= 12:
        return kind, " ".join(words[:max(4, len(words) // 3)])
    if kind == "off_topic":
        far = common[(i + len(common) // 2) % len(common)]
        return kind, texts[(side + 1) % len(texts)][far][1]
    return "other_answer", texts[side][common[(i + 1) % len(common)]][1]


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
    if status == "open" and store.identity_hits(c["id"], open_only=True):
        raise UserError(f"campaign {c['name']!r} has identity leaks to resolve first (edit, drop or keep each)")
    store.set_campaign_status(c["id"], status)
    return {**c, "status": status}


def resolve_identity(store, ref, hit_id: int, action: str, *, text: str | None = None, by: str | None = None) -> dict:
    """Edit, drop or keep one identity hit; the campaign opens to annotators when none is left open.
    Returns {"status", "open_left", "campaign_status"}."""
    c = require_campaign(store, ref)
    out = store.resolve_identity_hit(c["id"], int(hit_id), action, by=by, text=text)
    status = c["status"]
    if out["open_left"] == 0 and status == "review":
        store.set_campaign_status(c["id"], "open")
        status = "open"
    return {**out, "campaign_status": status}


def set_rater(store, ref, annotator: str, status: str, *, reason: str | None = None, by: str | None = None) -> int:
    """Pause or resume a rater on a campaign; returns how many open items went back to the pool."""
    c = require_campaign(store, ref)
    return store.set_rater_status(c["id"], annotator, status, reason=reason, by=by)


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
