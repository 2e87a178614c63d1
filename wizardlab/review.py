"""Review tasks: k curators per node say keep / eliminate / unsure; an admin applies the verdicts.

- `create_task` picks the finished evolutions (round >= 1) of a run matching a filter
  (`wizardlab.curation.Filters`), optionally a seeded random sample of them.
- `next_item`, `answer`, `skip`, `undo`: one curator's queue (like judging: each item goes to
  at most k curators, a curator sees an item once, undo reopens their latest verdict).
  What a curator sees: the parent, the evolved instruction, its response, the rule that
  fired and why; never the run's endpoint or model (blinding).
- `decide` / `plan` / `apply`: an item is decided once it has k verdicts, by `majority`
  (a strict majority of all k verdicts, not `unsure`) or `unanimous` (all k the same, not
  `unsure`). Applying writes one audited override per decided node whose effective status
  differs from the decision (restore / eliminate), naming the task, policy and votes; never
  silently, and only once per task.
- `campaign_conflicts`: judges of a campaign who also curated (overrides, review verdicts) the
  evolution runs behind its arms, named by the admin (the store does not record which
  evolution run a trained model came from).
- `report`: agreement between curators (`wizardlab.evaluation.stats.agreement`: percent,
  Cohen pairs, Fleiss, Krippendorff) and between the humans and each rule (per rule: of the
  decided nodes it eliminated, how many the humans would also eliminate: its precision with
  a Wilson interval, and the overturn rate).
"""

from __future__ import annotations

import random
from collections import Counter

from wizardlab.curation import Filters
from wizardlab.errors import UserError
from wizardlab.evaluation import stats

VERDICTS = ("keep", "eliminate", "unsure")
POLICIES = ("majority", "unanimous")
KEPT_BY_RULES = "(none: kept by the rules)"


def task(store, key) -> dict:
    """A review task by id or name, else a one-line `UserError`."""
    if key in (None, ""):
        raise UserError("choose a review task")
    row = store.review_task(key)
    if row is None:
        raise UserError(f"there is no review task {key!r}")
    return row


def create_task(store, run_id: int, name: str, filters: Filters | dict, *, k: int = 2, sample: int | None = None,
                seed: int = 0, user: str | None = None) -> dict:
    """A new review task over the matching evolutions of `run_id`; returns the task row."""
    name = (name or "").strip()
    if not name:
        raise UserError("give the review task a name")
    if not isinstance(k, int) or k < 1:
        raise UserError(f"k (curators per node) must be a whole number >= 1, got {k!r}")
    if sample is not None and (not isinstance(sample, int) or sample < 1):
        raise UserError(f"sample must be a whole number >= 1, got {sample!r}")
    run = store.get_run(int(run_id))
    if run is None or run["kind"] != "evolve":
        raise UserError(f"there is no evolution run {run_id}")
    filters = filters if isinstance(filters, Filters) else Filters.parse(**filters)
    nodes = store.review_candidates(run["id"], filters.as_dict())
    if sample is not None and sample < len(nodes):
        nodes = sorted(random.Random(seed).sample(nodes, sample))
    if not nodes:
        raise UserError(f"no finished evolution of run {run['id']} matches ({filters.describe()})")
    config = {**filters.as_dict(), **({"sample": sample, "seed": seed} if sample else {})}
    tid = store.create_review_task(name, run["id"], config, k, nodes, user)
    return store.review_task(tid)


# -- a curator's queue ---------------------------------------------------------------------------
def next_item(store, task_key, curator: str) -> dict | None:
    """The curator's current item (claimed now if needed) with their progress, or None when done."""
    t = task(store, task_key)
    if t["status"] != "open":
        raise UserError(f"review task {t['id']} is closed (applied)")
    aid = store.claim_review_item(t["id"], curator, t["k"])
    if aid is None:
        return None
    view = store.review_item_view(aid)
    return {**view, "progress": store.review_progress(t["id"], curator)}


def answer(store, task_key, curator: str, assignment_id: int, verdict: str, seconds: float | None = None) -> bool:
    """Record `verdict` on the curator's open assignment; False for a repeat (already answered)."""
    if verdict not in VERDICTS:
        raise UserError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    t = task(store, task_key)
    if t["status"] != "open":
        raise UserError(f"review task {t['id']} is closed (applied)")
    return store.answer_review(int(assignment_id), curator, verdict, seconds)


def answer_node(store, task_key, curator: str, node_id: int, verdict: str) -> None:
    """Scripted answer (CLI, imports): the curator's verdict on one node of the task."""
    t = task(store, task_key)
    if t["status"] != "open":
        raise UserError(f"review task {t['id']} is closed (applied)")
    aid = store.claim_review_item(t["id"], curator, t["k"], node_id=int(node_id))
    if aid is None or not answer(store, t["id"], curator, aid, verdict):
        raise UserError(f"node {node_id} is not open to {curator} in review task {t['id']} "
                        f"(not in the task, answered already, or at k={t['k']} curators)")


def skip(store, curator: str, assignment_id: int) -> bool:
    return store.skip_review(int(assignment_id), curator)


def undo(store, task_key, curator: str) -> bool:
    """Reopen the curator's latest verdict in the task; False when there is nothing to undo."""
    t = task(store, task_key)
    if t["status"] != "open":
        raise UserError(f"review task {t['id']} is closed (applied)")
    return store.undo_review(t["id"], curator) is not None


# -- deciding and applying -----------------------------------------------------------------------
def decide(verdicts: list[str], k: int, policy: str) -> str | None:
    """'keep' | 'eliminate' for an item with >= k verdicts under `policy`, else None (undecided)."""
    if policy not in POLICIES:
        raise UserError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if len(verdicts) < max(k, 1):
        return None
    label, n = Counter(verdicts).most_common(1)[0]
    if label == "unsure":
        return None
    if policy == "unanimous":
        return label if n == len(verdicts) else None
    return label if n * 2 > len(verdicts) else None


def _action(decision: str | None, effective: str) -> str | None:
    if decision == "keep" and effective == "eliminated":
        return "restore"
    if decision == "eliminate" and effective in ("kept", "seed"):
        return "eliminate"
    return None


def plan(store, task_key, policy: str) -> list[dict]:
    """Per item: node, verdicts, decision and the override applying would write (None: none)."""
    t = task(store, task_key)
    out = []
    for item in store.review_verdicts(t["id"]):
        decision = decide(list(item["verdicts"].values()), t["k"], policy)
        out.append({**item, "decision": decision, "action": _action(decision, item["effective_status"])})
    return out


def apply(store, task_key, policy: str, user: str, *, dry_run: bool = False) -> dict:
    """Write the audited overrides `policy` selects (one transaction) and close the task."""
    t = task(store, task_key)
    if t["status"] != "open":
        raise UserError(f"review task {t['id']} was already applied ({t['policy']}, by {t['applied_by']})")
    rows = plan(store, t["id"], policy)
    todo = [r for r in rows if r["action"]]
    summary = {"task": t["id"], "policy": policy, "items": len(rows),
               "decided": sum(r["decision"] is not None for r in rows), "overrides": len(todo),
               "restore": sum(r["action"] == "restore" for r in todo),
               "eliminate": sum(r["action"] == "eliminate" for r in todo)}
    if not dry_run:
        store.apply_review(t["id"], policy, user, [(r["item_id"], r["node_id"], r["action"], _reason(t, policy, r))
                                                   for r in todo])
    return summary


def _reason(t: dict, policy: str, row: dict) -> str:
    votes = ", ".join(f"{c}: {v}" for c, v in sorted(row["verdicts"].items()))
    return f"review task #{t['id']} {t['name']!r} ({policy}): {row['decision']} ({votes})"


# -- blinding -------------------------------------------------------------------------------------
def campaign_conflicts(store, campaign_ref, evolve_runs: list[int]) -> list[dict]:
    """Annotators who judged the campaign and also curated (overrides, review verdicts) the data
    of one of its arms, given as the evolution runs the arms were trained on. Returns
    [{annotator, judgments, overrides, verdicts}]: judge these annotators' votes with care."""
    from wizardlab.evaluation.campaigns import require_campaign

    campaign = require_campaign(store, campaign_ref)
    runs = sorted({int(r) for r in evolve_runs})
    if not runs:
        raise UserError("name the evolution runs the campaign's arms were trained on")
    for r in runs:
        run = store.get_run(r)
        if run is None or run["kind"] != "evolve":
            raise UserError(f"there is no evolution run {r}")
    judged = Counter(j["annotator"] for j in store.campaign_judgments(campaign["id"]) if j["source"] == "ui")
    curated = store.curators_of_runs(runs)
    return [{"annotator": a, "judgments": judged[a], **curated[a]} for a in sorted(judged) if a in curated]


# -- agreement -----------------------------------------------------------------------------------
def report(store, task_key, policy: str = "majority") -> dict:
    """Agreement between curators, and between the humans and each elimination rule."""
    t = task(store, task_key)
    rows = plan(store, t["id"], policy)
    records = [(r["item_id"], c, v) for r in rows for c, v in r["verdicts"].items()]
    complete = sum(len(r["verdicts"]) >= t["k"] for r in rows)
    return {"task": {k: t[k] for k in ("id", "name", "run_id", "filters", "k", "status", "policy", "created_by",
                                       "created_at", "applied_by", "applied_at")},
            "policy": policy, "n_items": len(rows), "n_complete": complete,
            "n_decided": sum(r["decision"] is not None for r in rows),
            "verdicts": dict(Counter(v for _, _, v in records)),
            "agreement": stats.agreement(records) if records else None,
            "rules": rule_precision(rows)}


def rule_precision(rows: list[dict]) -> list[dict]:
    """Per rule that fired on a reviewed node (and the nodes the rules kept): how often the humans'
    decision agrees with the rules. For a rule that eliminated n decided nodes of which the humans
    would eliminate k: precision k/n with a Wilson 95% interval, overturn rate 1 - k/n."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        for rule in (r["fail_rules"] or ([KEPT_BY_RULES] if r["rules_status"] == "kept" else [])):
            groups.setdefault(rule, []).append(r)
    out = []
    for rule, items in sorted(groups.items(), key=lambda kv: (kv[0] == KEPT_BY_RULES, kv[0])):
        rules_said = "keep" if rule == KEPT_BY_RULES else "eliminate"
        decided = [r for r in items if r["decision"] is not None]
        agree = sum(r["decision"] == rules_said for r in decided)
        votes = Counter(v for r in items for v in r["verdicts"].values())
        prop = stats.proportion(agree, len(decided))
        out.append({"rule": rule, "rules_said": rules_said, "n_items": len(items), "n_decided": len(decided),
                    "humans_agree": agree, "precision": prop["rate"], "ci": prop["ci"],
                    "overturn_rate": None if prop["rate"] is None else 1 - prop["rate"],
                    "votes_keep": votes["keep"], "votes_eliminate": votes["eliminate"],
                    "votes_unsure": votes["unsure"]})
    return out


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def render_text(rep: dict) -> str:
    """The report as plain text (CLI)."""
    t, ag = rep["task"], rep["agreement"] or {}
    lines = [f"Review task #{t['id']} {t['name']!r}: run {t['run_id']}, k={t['k']}, {t['status']}"
             + (f" ({t['policy']} by {t['applied_by']})" if t["policy"] else ""),
             f"items {rep['n_items']}, complete {rep['n_complete']}, decided ({rep['policy']}) {rep['n_decided']}; "
             f"verdicts {rep['verdicts']}",
             f"agreement: percent {_fmt(ag.get('percent_agreement'), True)}, "
             f"Cohen mean {_fmt(ag.get('cohen_kappa_mean'))}, "
             f"Fleiss {_fmt(ag.get('fleiss_kappa'))}, Krippendorff {_fmt(ag.get('krippendorff_alpha'))}"]
    for p in ag.get("cohen_kappa_pairs") or []:
        lines.append(f"  Cohen {p['a']} ~ {p['b']}: {_fmt(p['kappa'])} on {p['n']} nodes")
    lines.append(f"{'rule':<28} {'rules':>9} {'decided':>7} {'agree':>5} {'precision [95% CI]':>24} {'overturned':>10}")
    for r in rep["rules"]:
        ci = f"[{_fmt(r['ci'][0], True)}, {_fmt(r['ci'][1], True)}]" if r["ci"] else ""
        lines.append(f"{r['rule']:<28} {r['rules_said']:>9} {r['n_decided']:>7} {r['humans_agree']:>5} "
                     f"{_fmt(r['precision'], True) + ' ' + ci:>24} {_fmt(r['overturn_rate'], True):>10}")
    return "\n".join(lines)
