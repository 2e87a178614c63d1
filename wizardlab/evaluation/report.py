"""The campaign report: win rates, ratings, breakdowns, position bias, agreement, annotators, LLM judges.

`build_report(store, campaign)` returns one JSON-ready dict; `render_text` and
`write_csv` turn it into a text page or CSV tables. Every statistic comes from
`wizardlab.evaluation.stats` (scikit-learn, statsmodels, krippendorff, scipy underneath); this
module only selects and groups judgments. Conventions:

- Labels are in model terms: "a" = the pair's first model wins, "b" = the second,
  "tie"; "both_bad" counts as a tie.
- Human judgments are those with source "ui" or "import"; LLM judges ("llm:<model>",
  source "llm") are reported apart and compared with the humans.
- Win rates are per item: the item's label is the strict plurality of its human votes
  (a split vote is a tie); intervals are 95% bootstrap over items. Bradley-Terry uses
  the same per-item labels. Attention-check items are excluded from everything but the
  attention accuracy.
- Judgment-level rates (`judgment_level`, the WizardLM paper's human-evaluation figure)
  count every human vote once; intervals resample whole items with their votes.
- Capacity ratios (`capacity`, the paper's GPT-4 figure, Vicuna's protocol) come from
  judgments that carry 1-10 scores for both answers (the score-mode LLM judge, imported
  Vicuna GPT-4 reviews): total score of model a / total score of model b, overall and per
  skill, category and difficulty split, with 95% bootstrap intervals over items.
`NOTES` holds the one-sentence explanation of each figure shown with the report.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

from wizardlab.evaluation import raters, require_campaign, stats, trust

HUMAN = ("ui", "import")
HIGH_DIFFICULTY = 8
FAST_SECONDS = 3.0
ATTENTION_MIN = 0.8
RATING_BOOT = 100  # Bradley-Terry refits are costly: at most this many bootstrap resamples
NOTES = {
    "pairs": "Per item: each item counts once, labelled by the strict plurality of its human votes "
             "(a split vote is a tie); intervals are a 95% bootstrap over items.",
    "judgment_level": "Per judgment (the WizardLM paper's figure): every human vote counts once, so items "
                      "with more votes weigh more; intervals are a 95% bootstrap that resamples whole items "
                      "with all their votes.",
    "capacity": "Capacity ratio (the paper's GPT-4 figure, Vicuna's protocol): the judge's total 1-10 score "
                "of the first model divided by its total score of the second over the same items; "
                "intervals are a 95% bootstrap over items.",
    "length_controlled": "Length-controlled: a logistic model of the verdict on the length and markdown "
                         "differences of the two answers, read at zero difference, so a judge who prefers longer "
                         "answers cannot make the longer arm win.",
    "fragility": "Fragility: the fewest judgments whose removal ends the leader's lead in items won (exact search).",
    "judge_cards": "Judge card: how an LLM judge agrees with the human majority next to how well humans agree "
                   "with each other, how often its verdict flips when the answers swap sides, and how often it "
                   "picks the longer answer or the one with more lists (0.5 = no preference).",
    "raters": raters.NOTE,
    "identity_leaks": "Identity leaks: answers that name a model or vendor (\"as an AI model developed by "
                      "...\"), found when the campaign was created; annotators see nothing until each is edited, "
                      "dropped or kept.",
    "conclusive": "Conclusive yet: a Bayes factor over the non-tie items that may be checked after every "
                  "judgment and still keeps a 5% false-alarm rate (conclusive at 20).",
}


def model_label(label: str) -> str:
    return "tie" if stats.is_tie(label) else label


def majority(labels: list[str]) -> str:
    """Strict plurality of model-term labels; a split at the top is a tie."""
    counts = Counter(model_label(x) for x in labels).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return "tie"
    return counts[0][0]


def band(difficulty) -> str | None:
    if difficulty is None:
        return None
    d = float(difficulty)
    return "1-3" if d < 4 else "4-6" if d < 7 else "7-10"


def build_report(store, campaign_ref, *, n_boot: int = 2000, seed: int = 0, exclude=None) -> dict:
    """The whole report. `exclude`: rater names to leave out of every result, or "flagged" (the
    raters whose card has a flag); `raters.effect` shows what leaving out the flagged ones changes."""
    campaign = require_campaign(store, campaign_ref)
    rows = store.campaign_judgments(campaign["id"])
    cards = raters.cards(rows, store.raters(campaign["id"]),
                         campaign["config"].get("gold_threshold", raters.GOLD_THRESHOLD))
    excluded = raters.flagged(cards) if exclude == "flagged" else sorted(set(exclude or ()))
    every = [r for r in rows if r["source"] in HUMAN and r["kind"] == "real"]
    human = [r for r in every if r["annotator"] not in excluded]
    rows = [r for r in rows if r["annotator"] not in excluded]
    items = _items(human)
    return {
        "campaign": {k: campaign[k] for k in ("id", "name", "k", "status", "created_at")},
        "options": {k: campaign["config"].get(k) for k in ("gold_share", "repeat_share", "gold_threshold", "routing")},
        "raters": {"cards": cards, "flagged": raters.flagged(cards), "excluded": excluded,
                   "paused": [c["annotator"] for c in cards if c["paused"]],
                   "effect": exclusion_effect(every, raters.flagged(cards), min(n_boot, 200), seed)},
        "identity_leaks": [{k: h[k] for k in ("id", "output_id", "model", "match", "context", "status")}
                           for h in store.identity_hits(campaign["id"])],
        "n_items": len(store.campaign_items(campaign["id"])),
        "n_judgments": len(human),
        "progress": store.campaign_progress(campaign["id"]),
        "fill": {str(k): v for k, v in store.campaign_fill(campaign["id"]).items()},
        "notes": NOTES,
        "pairs": _pairs(items, n_boot, seed),
        "judgment_level": judgment_level(items, n_boot, seed),
        "ratings": _ratings(items, n_boot, seed),
        "breakdowns": _breakdowns(items, n_boot, seed),
        "position_bias": stats.position_bias([(r["label"], r["a_on_left"]) for r in human
                                              if r["a_on_left"] is not None]),
        "agreement": stats.agreement([(r["item_id"], r["annotator"], model_label(r["label"])) for r in human]),
        "annotators": _annotators(rows, human),
        "llm_judges": _llm_judges(rows, items, n_boot, seed),
        "capacity": capacity(rows, n_boot, seed),
        **trust_sections(store.campaign_items(campaign["id"]), rows, human, items, n_boot, seed),
    }


def exclusion_effect(human: list[dict], flagged: list[str], n_boot: int, seed: int) -> list[dict]:
    """Per pair: the win rate (ties half) with every rater and without the flagged ones."""
    full = {(p["model_a"], p["model_b"]): p for p in _pairs(_items(human), n_boot, seed)}
    kept = {(p["model_a"], p["model_b"]): p for p in
            _pairs(_items([r for r in human if r["annotator"] not in flagged]), n_boot, seed)}
    out = []
    for (a, b), p in sorted(full.items()):
        q = kept.get((a, b), {})
        rate = q.get("win_rate_ties_half")
        out.append({"model_a": a, "model_b": b, "n_all": p["n"], "win_rate_all": p["win_rate_ties_half"],
                    "n_without_flagged": q.get("n", 0), "win_rate_without_flagged": rate,
                    "change": None if rate is None else rate - p["win_rate_ties_half"]})
    return out


def trust_sections(campaign_items: list[dict], rows: list[dict], human: list[dict], items: dict, n_boot: int,
                   seed: int) -> dict:
    """Length-controlled win rates (humans and each LLM judge), fragility and "conclusive yet?" per pair;
    see `wizardlab.evaluation.trust`."""
    texts = {i["item_id"]: (i["response_a"], i["response_b"]) for i in campaign_items}
    judged = defaultdict(list)  # (who, model a, model b) -> judgments
    for r in human:
        judged[("humans", r["model_a"], r["model_b"])].append(r)
    for r in rows:
        if r["source"] == "llm" and r["kind"] == "real":
            judged[(r["annotator"], r["model_a"], r["model_b"])].append(r)
    controlled = [{"judges": who, "model_a": a, "model_b": b, **trust.length_controlled(
        [(r["item_id"], r["label"], *texts.get(r["item_id"], ("", ""))) for r in rs],
        n_boot=min(n_boot, trust.STYLE_BOOT), seed=seed)} for (who, a, b), rs in sorted(judged.items())]
    by_pair = defaultdict(dict)
    for item_id, it in items.items():
        by_pair[(it["model_a"], it["model_b"])][item_id] = it
    item_votes = defaultdict(list)
    for r in human:
        item_votes[r["item_id"]].append((r["id"], r["label"]))
    fragile, sequential = [], []
    for (a, b), its in sorted(by_pair.items()):
        votes = {i: item_votes[i] for i in its}
        fragile.append({"model_a": a, "model_b": b, **trust.fragility(votes)})
        sequential.append({"model_a": a, "model_b": b, **trust.conclusive([it["label"] for it in its.values()])})
    return {"length_controlled": controlled, "fragility": fragile, "conclusive": sequential,
            "judge_cards": judge_cards(texts, rows, human, items)}


def judge_cards(texts: dict, rows: list[dict], human: list[dict], items: dict) -> list[dict]:
    """Per LLM judge: agreement with the human majority beside the human-human ceiling, flip rate
    when the sides swap, preference for the longer answer and for lists (humans' beside it), and
    self-preference for a compared model of its own family."""
    pooled = [a for a in stats.annotator_report([(r["item_id"], r["annotator"], model_label(r["label"]))
                                                  for r in human]) if a["n_compared"]] if human else []
    ceiling = (sum(a["agreement"] * a["n_compared"] for a in pooled) / sum(a["n_compared"] for a in pooled)
               if pooled else None)
    with_text = lambda rs: [(r["label"], *texts.get(r["item_id"], ("", ""))) for r in rs]  # noqa: E731
    humans = {kind: trust.preference(with_text(human), kind) for kind in ("words", "lists")}
    by_judge = defaultdict(list)
    for r in rows:
        if r["source"] == "llm" and r["kind"] == "real":
            by_judge[r["annotator"]].append(r)
    cards = []
    for judge, rs in sorted(by_judge.items()):
        swaps = [o for o in (trust.swap_outcome(r["rationale"]) for r in rs) if o is not None]
        agree = compare_with_humans({r["item_id"]: model_label(r["label"]) for r in rs}, items)
        cards.append({"judge": judge, "n": len(rs), "majority_agreement": agree["majority_agreement"],
                      "human_ceiling": ceiling, "n_swapped": len(swaps),
                      "flip_rate": swaps.count("flip") / len(swaps) if swaps else None,
                      "longer_preference": trust.preference(with_text(rs), "words"),
                      "list_preference": trust.preference(with_text(rs), "lists"),
                      "humans_longer_preference": humans["words"], "humans_list_preference": humans["lists"],
                      "self_preference": _self_preference(judge, rs, items)})
    return cards


def _self_preference(judge: str, rs: list[dict], items: dict) -> list[dict]:
    """For each pair with one model of the judge's family: that model's win rate (ties half) by the
    judge and by the human majority on the same items, and the difference."""
    fam, out = trust.family(judge), []
    groups = defaultdict(list)
    for r in rs:
        groups[(r["model_a"], r["model_b"])].append(r)
    for (a, b), its in sorted(groups.items()):
        own = [side for side, m in (("a", a), ("b", b)) if trust.family(m) == fam]
        if len(own) != 1:
            continue
        rate = lambda labels: (sum(x == own[0] for x in labels) + sum(x == "tie" for x in labels) / 2  # noqa: E731
                               ) / len(labels) if labels else None
        judge_rate = rate([model_label(r["label"]) for r in its])
        human_rate = rate([items[r["item_id"]]["label"] for r in its if r["item_id"] in items])
        out.append({"model": a if own[0] == "a" else b, "other": b if own[0] == "a" else a, "n": len(its),
                    "judge_win_rate": judge_rate, "humans_win_rate": human_rate,
                    "difference": None if human_rate is None else judge_rate - human_rate})
    return out


def llm_judges_report(store, campaign_ref, *, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Only the LLM-judge section of the report (cheap on campaigns with many annotators)."""
    campaign = require_campaign(store, campaign_ref)
    rows = store.campaign_judgments(campaign["id"])
    human = [r for r in rows if r["source"] in HUMAN and r["kind"] == "real"]
    return _llm_judges(rows, _items(human), n_boot, seed)


def _items(human: list[dict]) -> dict[int, dict]:
    """item id -> {model_a, model_b, skill, category, difficulty, labels, label (majority)}."""
    items: dict[int, dict] = {}
    for r in human:
        it = items.setdefault(r["item_id"], {k: r[k] for k in ("model_a", "model_b", "skill", "category",
                                                                 "difficulty", "prompt_key")} | {"labels": []})
        it["labels"].append(r["label"])
    for it in items.values():
        it["label"] = majority(it["labels"])
    return items


def _pair_rows(items: list[dict], n_boot: int, seed: int) -> list[dict]:
    groups = defaultdict(list)
    for it in items:
        groups[(it["model_a"], it["model_b"])].append(it)
    out = []
    for (a, b), its in sorted(groups.items()):
        wr = stats.win_rates([it["label"] for it in its], n_boot=n_boot, seed=seed)
        out.append({"model_a": a, "model_b": b, "n_votes": sum(len(it["labels"]) for it in its), **wr})
    return out


def _pairs(items: dict, n_boot: int, seed: int) -> list[dict]:
    return _pair_rows(list(items.values()), n_boot, seed)


def _ratings(items: dict, n_boot: int, seed: int) -> list[dict]:
    """Bradley-Terry over the items' majority labels (one comparison per item), 3+ models only."""
    models = {m for it in items.values() for m in (it["model_a"], it["model_b"])}
    if len(models) < 3:
        return []
    comparisons = [(it["model_a"], it["model_b"], {"a": "x", "b": "y"}.get(it["label"], "tie"))
                   for it in items.values()]
    return stats.bradley_terry(comparisons, n_boot=min(n_boot, RATING_BOOT), seed=seed)


def split(difficulty) -> str | None:
    """The paper's difficulty split: ">=8" or "<8" (None without a difficulty)."""
    if difficulty is None:
        return None
    return f">={HIGH_DIFFICULTY}" if float(difficulty) >= HIGH_DIFFICULTY else f"<{HIGH_DIFFICULTY}"


BREAKDOWN_KEYS = {"skill": lambda it: it["skill"], "category": lambda it: it["category"],
                  "difficulty_band": lambda it: band(it["difficulty"]),
                  "difficulty_split": lambda it: split(it["difficulty"])}


def _grouped(rows: list[dict], keys=BREAKDOWN_KEYS):
    """(by, group, rows of that group) for every breakdown key, groups sorted; rows without the key drop."""
    for by, key in keys.items():
        groups = defaultdict(list)
        for r in rows:
            if key(r) is not None:
                groups[key(r)].append(r)
        for group, its in sorted(groups.items(), key=lambda g: str(g[0])):
            yield by, str(group), its


def _breakdowns(items: dict, n_boot: int, seed: int) -> list[dict]:
    return [{"by": by, "group": group, **row} for by, group, its in _grouped(list(items.values()))
            for row in _pair_rows(its, min(n_boot, 1000), seed)]


def _vote_rows(items: list[dict], n_boot: int, seed: int) -> list[dict]:
    groups = defaultdict(list)
    for it in items:
        groups[(it["model_a"], it["model_b"])].append(it["labels"])
    return [{"model_a": a, "model_b": b, **stats.vote_rates(labels, n_boot=n_boot, seed=seed)}
            for (a, b), labels in sorted(groups.items())]


def judgment_level(items: dict, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Win / tie / loss over all human judgments (the paper's count), per pair ("by": "all")
    and per breakdown group; see `stats.vote_rates`."""
    its = list(items.values())
    out = [{"by": "all", "group": "all", **row} for row in _vote_rows(its, n_boot, seed)]
    return out + [{"by": by, "group": group, **row} for by, group, rows in _grouped(its)
                  for row in _vote_rows(rows, min(n_boot, 1000), seed)]


def capacity(rows: list[dict], n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Capacity ratios (score of a / score of b) per score-giving judge and model pair, overall and
    per skill, category and difficulty split; see `stats.capacity_ratio`."""
    groups = defaultdict(list)
    for r in rows:
        if r["score_a"] is not None and r["score_b"] is not None and r["kind"] == "real":
            groups[(r["annotator"], r["model_a"], r["model_b"])].append(r)
    keys = {k: BREAKDOWN_KEYS[k] for k in ("skill", "category", "difficulty_split")}
    out = []
    for (judge, a, b), its in sorted(groups.items()):
        ratio = lambda rs, n: stats.capacity_ratio([(r["score_a"], r["score_b"]) for r in rs],  # noqa: E731
                                                   n_boot=n, seed=seed)
        groups = [{"by": by, "group": group, **ratio(rs, min(n_boot, 1000))} for by, group, rs in _grouped(its, keys)]
        out.append({"judge": judge, "model_a": a, "model_b": b, **ratio(its, n_boot), "groups": groups,
                    "at_least_90": _at_least(groups, 0.9)})
    return out


def _at_least(groups: list[dict], level: float) -> dict:
    """Per breakdown: how many groups reach `level` of the other model's capacity (the paper's
    "more than 90% of ChatGPT's capacity on 17 of 29 skills"), of how many with a ratio."""
    out = {}
    for g in groups:
        if g["ratio"] is not None:
            n, k = out.get(g["by"], (0, 0))
            out[g["by"]] = (n + 1, k + (g["ratio"] >= level))
    return {by: {"n_groups": n, "n_at_least": k} for by, (n, k) in out.items()}


def _annotators(rows: list[dict], human: list[dict]) -> list[dict]:
    agree = {a["annotator"]: a for a in stats.annotator_report(
        [(r["item_id"], r["annotator"], model_label(r["label"])) for r in human])}
    attention = defaultdict(list)
    seconds = defaultdict(list)
    for r in rows:
        if r["source"] not in HUMAN:
            continue
        if r["kind"] == "attention":
            attention[r["annotator"]].append(r["label"] == r["attention_label"])
        if r["seconds"] is not None:
            seconds[r["annotator"]].append(r["seconds"])
    out = []
    for name in sorted(set(agree) | set(attention)):
        base = agree.get(name, {"annotator": name, "n": 0, "n_compared": 0, "agreement": None, "kappa": None,
                                "p_value": None, "flag": None})
        secs = sorted(seconds[name])
        att = attention[name]
        row = {**base, "median_seconds": secs[len(secs) // 2] if secs else None,
               "attention_n": len(att), "attention_accuracy": sum(att) / len(att) if att else None}
        row["flags"] = _flags(row)
        out.append(row)
    return out


def _flags(row: dict) -> list[str]:
    flags = [row["flag"]] if row.get("flag") else []
    if row["median_seconds"] is not None and row["median_seconds"] < FAST_SECONDS:
        flags.append("too_fast")
    if row["attention_accuracy"] is not None and row["attention_accuracy"] < ATTENTION_MIN:
        flags.append("failed_attention_checks")
    return flags


def _llm_judges(rows: list[dict], items: dict, n_boot: int, seed: int) -> list[dict]:
    """Each LLM judge: its own win rates, and its agreement with the human majority and every human vote."""
    by_judge, judge_items = defaultdict(dict), defaultdict(list)
    for r in rows:
        if r["source"] == "llm" and r["kind"] == "real":
            by_judge[r["annotator"]][r["item_id"]] = model_label(r["label"])
            judge_items[r["annotator"]].append({"model_a": r["model_a"], "model_b": r["model_b"],
                                                "label": model_label(r["label"]), "labels": [r["label"]]})
    out = []
    for judge, labels in sorted(by_judge.items()):
        out.append({"judge": judge, "n_items": len(labels), **compare_with_humans(labels, items),
                    "pairs": _pair_rows(judge_items[judge], n_boot, seed)})
    return out


def compare_with_humans(judge_labels: dict, items: dict) -> dict:
    """Agreement of one judge's {item: label} with the human majority and with each human vote."""
    records, votes_same, votes_n, nt_same, nt_n = [], 0, 0, 0, 0
    for item_id, label in judge_labels.items():
        it = items.get(item_id)
        if it is None:
            continue
        counts = Counter(model_label(x) for x in it["labels"]).most_common()
        if len(counts) == 1 or counts[0][1] > counts[1][1]:
            records += [(item_id, "judge", label), (item_id, "humans", counts[0][0])]
        for vote in map(model_label, it["labels"]):
            votes_same += vote == label
            votes_n += 1
            if "tie" not in (vote, label):
                nt_same += vote == label
                nt_n += 1
    agr = stats.agreement(records) if records else {}
    kappa = (agr.get("cohen_kappa_pairs") or [{}])[0].get("kappa")
    return {"n_with_majority": agr.get("n_items", 0), "majority_agreement": agr.get("percent_agreement"),
            "majority_agreement_without_ties": agr.get("percent_agreement_without_ties"),
            "majority_kappa": kappa, "vote_agreement": votes_same / votes_n if votes_n else None,
            "vote_agreement_without_ties": nt_same / nt_n if nt_n else None, "n_votes": votes_n}


# -- rendering -----------------------------------------------------------------
def _pct(x) -> str:
    return "  n/a" if x is None else f"{100 * x:5.1f}%"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _num(x, fmt="{:.3f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def render_text(rep: dict) -> str:
    c = rep["campaign"]
    lines = [f"Campaign {c['id']} {c['name']!r}: {rep['n_items']} items, k={c['k']}, {rep['n_judgments']} human "
             "judgments", "", "Win / tie / loss of the first model (per item, human majority; 95% bootstrap CI):"]
    for p in rep["pairs"]:
        lines.append(f"  {p['model_a']} vs {p['model_b']} (n={p['n']}): win {_pct(p['win'])}{_ci(p['ci']['win'])}"
                     f"  tie {_pct(p['tie'])}{_ci(p['ci']['tie'])}  loss {_pct(p['loss'])}{_ci(p['ci']['loss'])}"
                     f"  win rate (ties half) {_pct(p['win_rate_ties_half'])}")
    lines += [f"  ({rep['notes']['pairs']})", "", "Win / tie / loss over all judgments (the paper's count):"]
    for p in (j for j in rep["judgment_level"] if j["by"] == "all"):
        lines.append(f"  {p['model_a']} vs {p['model_b']} ({p['n']} judgments on {p['n_items']} items): "
                     f"win {p['counts']['a']} {_pct(p['win'])}{_ci(p['ci']['win'])}  tie {p['counts']['tie']} "
                     f"{_pct(p['tie'])}{_ci(p['ci']['tie'])}  loss {p['counts']['b']} {_pct(p['loss'])}"
                     f"{_ci(p['ci']['loss'])}")
    lines.append(f"  ({rep['notes']['judgment_level']})")
    lines += _capacity_lines(rep) + _trust_lines(rep)
    if rep["ratings"]:
        lines += ["", "Bradley-Terry ratings (Elo scale, 95% CI):"]
        lines += [f"  {r['model']}: {r['rating']:.0f} [{r['ci_low']:.0f}, {r['ci_high']:.0f}] n={r['n']}"
                  for r in rep["ratings"]]
    split = [b for b in rep["breakdowns"] if b["by"] == "difficulty_split"]
    if split:
        lines += ["", "By difficulty (the paper's >= 8 split):"]
        lines += [f"  {b['group']}: {b['model_a']} vs {b['model_b']} n={b['n']} win {_pct(b['win'])} "
                  f"tie {_pct(b['tie'])} loss {_pct(b['loss'])}" for b in split]
    pb = rep["position_bias"]
    lines += ["", f"Position bias: left wins {_pct(pb['left_win_rate'])}{_ci(pb['ci'])} of {pb['n']} non-tie votes"
                  f" (p={_num(pb['p_value'])})"]
    a = rep["agreement"]
    lines += ["", f"Agreement ({a['n_items']} items, {a['n_annotators']} annotators): percent "
                  f"{_pct(a['percent_agreement'])}, without ties {_pct(a['percent_agreement_without_ties'])}, "
                  f"Cohen mean {_num(a['cohen_kappa_mean'])}, Fleiss {_num(a['fleiss_kappa'])}, "
                  f"Krippendorff alpha {_num(a['krippendorff_alpha'])}"]
    lines += [f"  kappa {p['a']} / {p['b']}: {_num(p['kappa'])} (n={p['n']})" for p in a["cohen_kappa_pairs"][:20]]
    lines += ["", "Annotators (agreement with the others' majority):"]
    lines += [f"  {r['annotator']}: n={r['n']} agreement {_pct(r['agreement'])} kappa {_num(r['kappa'])} "
              f"median {_num(r['median_seconds'], '{:.1f}')} s attention {_pct(r['attention_accuracy'])} "
              f"{' '.join(r['flags'])}" for r in rep["annotators"]]
    lines += _rater_lines(rep)
    for j in rep["llm_judges"]:
        lines += ["", f"LLM judge {j['judge']} vs humans ({j['n_items']} items): majority agreement "
                      f"{_pct(j['majority_agreement'])} (without ties {_pct(j['majority_agreement_without_ties'])},"
                      f" kappa {_num(j['majority_kappa'])}, n={j['n_with_majority']}); per vote "
                      f"{_pct(j['vote_agreement'])} (without ties {_pct(j['vote_agreement_without_ties'])})"]
        lines += [f"  judge's verdicts {p['model_a']} vs {p['model_b']} (n={p['n']}): win {_pct(p['win'])}"
                  f"{_ci(p['ci']['win'])} tie {_pct(p['tie'])} loss {_pct(p['loss'])}{_ci(p['ci']['loss'])}"
                  for p in j["pairs"]]
    return "\n".join(lines)


def _rater_lines(rep: dict) -> list[str]:
    r = rep.get("raters") or {}
    lines = []
    if r.get("cards"):
        lines += ["", "Rater cards (gold accuracy, flips on swapped repeats, left-side and tie rates, median time, "
                      "agreement with the others):"]
        lines += [f"  {c['annotator']}: n={c['n']} gold {_pct(c['gold_accuracy'])} of {c['gold_n']}, flips "
                  f"{_pct(c['flip_rate'])} of {c['repeat_n']}, left {_pct(c['left_rate'])}, ties {_pct(c['tie_rate'])},"
                  f" median {_num(c['median_seconds'], '{:.1f}')} s, agreement {_pct(c['agreement'])}"
                  + (f"  FLAGS: {' '.join(c['flags'])}" if c["flags"] else "")
                  + (f" ({c['pause_reason']})" if c["pause_reason"] else "") for c in r["cards"]]
        if r["excluded"]:
            lines.append(f"  Excluded from every result above: {', '.join(r['excluded'])}")
        for e in r["effect"]:
            lines.append(f"  Without the flagged raters ({', '.join(r['flagged']) or 'none'}): {e['model_a']} vs "
                         f"{e['model_b']} win rate (ties half) {_pct(e['win_rate_all'])} -> "
                         f"{_pct(e['win_rate_without_flagged'])} (n={e['n_without_flagged']} items)")
        lines.append(f"  ({rep['notes']['raters']})")
    leaks = rep.get("identity_leaks") or []
    if leaks:
        lines += ["", f"Identity leaks ({sum(h['status'] == 'open' for h in leaks)} open of {len(leaks)}):"]
        lines += [f"  #{h['id']} [{h['status']}] {h['model']}: {h['match']!r} in {h['context'][:120]!r}" for h in leaks]
    return lines


def render_html(rep: dict) -> str:
    """A self-contained HTML page of the text report (inline CSS, no scripts); the Evaluate tab's
    export writes its richer page (eval_ui.rater_sections.html_page)."""
    from html import escape

    c = rep["campaign"]
    title = escape(f"Campaign {c['id']} {c['name']}: report")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>body '
            "{font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px} pre {white-space: pre-wrap; "
            f"font-size: 13px}}</style></head><body><h2>{title}</h2><pre>{escape(render_text(rep))}</pre></body></html>")


def _bar_text(ratio, width: int = 30) -> str:
    """An ASCII bar for a capacity ratio: full width = 120%, a '|' marks 100%."""
    if ratio is None:
        return ""
    filled = min(width, round(ratio / 1.2 * width))
    bar = list("#" * filled + " " * (width - filled))
    mark = round(width / 1.2)
    bar[mark - 1] = "|" if bar[mark - 1] == " " else bar[mark - 1]
    return "".join(bar)


def _capacity_lines(rep: dict) -> list[str]:
    lines = []
    for c in rep.get("capacity", []):
        lines += ["", f"Capacity of {c['model_a']} relative to {c['model_b']} by {c['judge']} "
                      f"({c['n']} items, total {c['total_a']:g} / {c['total_b']:g}): "
                      f"{_pct(c['ratio'])}{_ci(c['ci'])}; at least 90% on "
                      + ", ".join(f"{v['n_at_least']} of {v['n_groups']} {by} groups"
                                  for by, v in c["at_least_90"].items() if by != "difficulty_split")]
        for g in c["groups"]:
            if g["by"] in ("skill", "category"):
                lines.append(f"  {g['group'][:24]:24} {_bar_text(g['ratio'])} {_pct(g['ratio'])}{_ci(g['ci'])}"
                             f" n={g['n']}")
        lines.append(f"  ({rep['notes']['capacity']})")
    return lines


def _trust_lines(rep: dict) -> list[str]:
    lines = ["", "Length- and style-controlled win rate of the first model (ties half; 95% CI):"]
    for r in rep.get("length_controlled", []):
        coef = r["coefficients"] or {}
        lines.append(f"  {r['judges']}: {r['model_a']} vs {r['model_b']} (n={r['n']}): raw {_pct(r['raw'])}, "
                     f"controlled {_pct(r['controlled'])}{_ci(r['ci'])}, length coefficient "
                     f"{_num(coef.get('length'), '{:.2f}')}" + (f"  WARNING: {r['warning']}" if r["warning"] else ""))
    lines.append(f"  ({rep['notes']['length_controlled']})")
    for f, c in zip(rep.get("fragility", []), rep.get("conclusive", [])):
        p, j = f["per_item"], f["judgment_level"]
        lead = {"a": f["model_a"], "b": f["model_b"]}
        ids = ", ".join(map(str, p["judgment_ids"][:10])) + (" ..." if len(p["judgment_ids"]) > 10 else "")
        verdict = (f"{lead[p['leader']]} leads by {p['margin']} items; removing {p['n_to_flip']} judgments (ids {ids}) "
                   f"ends that lead; per judgment {j['n_to_flip']}") if p["leader"] else "no model leads"
        lines.append(f"  {f['model_a']} vs {f['model_b']}: {verdict}; conclusive yet: "
                     f"{'yes' if c['conclusive'] else 'no'} (Bayes factor {c['bayes_factor']:.3g} vs {c['threshold']:g})")
    lines.append(f"  ({rep['notes']['fragility']} {rep['notes']['conclusive']})")
    for c in rep.get("judge_cards", []):
        lp, hp = c["longer_preference"], c["humans_longer_preference"]
        lines.append(f"  Judge card {c['judge']}: agreement with the human majority {_pct(c['majority_agreement'])}"
                     f" (humans among themselves {_pct(c['human_ceiling'])}), flips when sides swap "
                     f"{_pct(c['flip_rate'])} of {c['n_swapped']}, picks the longer answer {_pct(lp['share'])} "
                     f"(humans {_pct(hp['share'])}), the one with more list items {_pct(c['list_preference']['share'])}"
                     + "".join(f"; {s['model']} wins {_pct(s['judge_win_rate'])} by this judge of its family vs "
                               f"{_pct(s['humans_win_rate'])} by humans" for s in c["self_preference"]))
    if rep.get("judge_cards"):
        lines.append(f"  ({rep['notes']['judge_cards']})")
    return lines


def tables(rep: dict) -> dict[str, list[dict]]:
    """The report as flat tables (for CSV and the UI)."""
    flat = lambda r: {k: v for k, v in r.items() if k not in ("ci", "counts")} | {  # noqa: E731
        f"{k}_ci_low": (r.get("ci") or {}).get(k, [None])[0] for k in ("win", "tie", "loss")} | {
        f"{k}_ci_high": (r.get("ci") or {}).get(k, [None, None])[1] for k in ("win", "tie", "loss")}
    return {
        "pairs": [flat(p) for p in rep["pairs"]],
        "ratings": rep["ratings"],
        "breakdowns": [flat(b) for b in rep["breakdowns"]],
        "judgment_level": [flat(j) | {f"n_{k}": v for k, v in j["counts"].items()} for j in rep["judgment_level"]],
        "length_controlled": [{k: v for k, v in r.items() if k not in ("ci", "coefficients")}
                              | {"ci_low": (r["ci"] or [None, None])[0], "ci_high": (r["ci"] or [None, None])[1]}
                              | {f"coef_{k}": v for k, v in (r["coefficients"] or {}).items()}
                              for r in rep["length_controlled"]],
        "fragility": [{"model_a": f["model_a"], "model_b": f["model_b"],
                       **{f"per_item_{k}": v for k, v in f["per_item"].items() if k != "judgment_ids"},
                       "per_item_judgment_ids": " ".join(map(str, f["per_item"]["judgment_ids"])),
                       **{f"judgment_level_{k}": v for k, v in f["judgment_level"].items()}}
                      for f in rep["fragility"]],
        "conclusive": rep["conclusive"],
        "judge_cards": [{k: v for k, v in c.items() if not isinstance(v, (dict, list))}
                        | {f"{k}_share": v["share"] for k, v in c.items() if isinstance(v, dict)}
                        | {f"{k}_n": v["n"] for k, v in c.items() if isinstance(v, dict)}
                        | {"self_preference_difference": "; ".join(f"{s['model']}: {s['difference']}"
                                                                    for s in c["self_preference"])}
                        for c in rep["judge_cards"]],
        "capacity": [_flat_capacity(c, {"by": "all", "group": "all"}) for c in rep["capacity"]]
        + [_flat_capacity(c, g) for c in rep["capacity"] for g in c["groups"]],
        "kappa_pairs": rep["agreement"]["cohen_kappa_pairs"],
        "agreement": [{k: v for k, v in rep["agreement"].items() if k != "cohen_kappa_pairs"}],
        "annotators": [{**r, "flags": " ".join(r["flags"])} for r in rep["annotators"]],
        "rater_cards": [{**c, "flags": " ".join(c["flags"])} for c in rep["raters"]["cards"]],
        "rater_exclusion": rep["raters"]["effect"],
        "identity_leaks": rep["identity_leaks"],
        "llm_judges": [{k: v for k, v in j.items() if k != "pairs"} for j in rep["llm_judges"]],
        "progress": rep["progress"],
    }


def _flat_capacity(c: dict, g: dict) -> dict:
    """One CSV row of the capacity table: the judge and pair of `c`, the figures of group `g`."""
    src = c if g.get("by") == "all" else g
    ci = src.get("ci") or [None, None]
    return {"judge": c["judge"], "model_a": c["model_a"], "model_b": c["model_b"], "by": g["by"],
            "group": g["group"], **{k: src[k] for k in ("n", "total_a", "total_b", "mean_a", "mean_b", "ratio")},
            "ci_low": ci[0], "ci_high": ci[1]}


def write_csv(rep: dict, out_dir: str | Path) -> list[Path]:
    """The report's tables as one CSV each in `out_dir`."""
    return write_tables(tables(rep), out_dir)


def write_tables(named_rows: dict[str, list[dict]], out_dir: str | Path) -> list[Path]:
    """Write each {name: rows} as `<out_dir>/<name>.csv` (columns: every key seen, in order)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in named_rows.items():
        path = out_dir / f"{name}.csv"
        fields = list(dict.fromkeys(k for r in rows for k in r)) or ["empty"]
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    return written
