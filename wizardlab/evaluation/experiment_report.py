"""The experiment report: each arm's data profile beside its human verdict, and the arms compared.

`build(store, experiment)` returns one JSON-ready dict: per arm its recipe, export (rows,
content hash, profile), human win rate against the field with a 95% bootstrap interval,
Bradley-Terry rating with interval and the LLM judge's win rate; per pair of contestants
the win rate (ties half) and an exact sign test on paired judgments (head to head on the
same items, or each against the common baseline on the same prompts); breakdowns per
arm by skill and difficulty; the campaign's own report (`report.build_report`: agreement,
position bias, annotators); and a one-paragraph plain-language summary.
`render_text`, `write_csv` and `write_html` (one self-contained page, no external file)
turn it into pages. Statistics come from `stats`; this module only groups judgments.
"""

from __future__ import annotations

import csv
import html
import itertools
from collections import defaultdict
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.evaluation import report, stats

MIN_GROUP = 3  # a skill needs this many items to be named in the summary


def build(store, ref, *, n_boot: int = 1000, seed: int = 0) -> dict:
    from wizardlab.experiments import arm_output_sets, require_experiment, status

    exp = require_experiment(store, ref)
    if not exp["campaign_id"]:
        raise UserError(f"experiment {exp['name']!r} has no campaign yet (status: {exp['status']})")
    names = _names(store, exp, arm_output_sets(store, exp))
    campaign = report.build_report(store, exp["campaign_id"], n_boot=n_boot, seed=seed)
    rows = store.campaign_judgments(exp["campaign_id"])
    human = _items([r for r in rows if r["source"] in report.HUMAN and r["attention_label"] is None], names)
    contestants = list(dict.fromkeys(names.values()))
    view = status(store, exp["id"])
    rep = {"experiment": {k: view[k] for k in ("id", "name", "status", "campaign_id")},
           "config": {k: exp["config"].get(k) for k in ("testset", "pairs", "baseline", "k", "external_sets",
                                                         "train")},
           "n_items": len({it["prompt_key"] for it in human.values()}), "n_judged_items": len(human),
           "arms": _arms(store, exp, view, human, contestants, n_boot, seed),
           "comparisons": _comparisons(human, contestants, exp["config"], n_boot, seed),
           "breakdowns": _breakdowns(human, contestants, n_boot, seed),
           "llm_judges": _llm(rows, names, campaign, n_boot, seed),
           "campaign": {k: campaign[k] for k in ("n_items", "n_judgments", "agreement", "position_bias")}}
    rep["summary"] = summary(rep)
    return rep


def _names(store, exp: dict, arm_sets: dict) -> dict[str, str]:
    """output set model -> contestant name (the arm's name, or the external set's name)."""
    names = {s["model"]: arm for arm, s in arm_sets.items()}
    for ref in exp["config"].get("external_sets", []):
        s = store.output_set(ref)
        if s is not None:
            names.setdefault(s["model"], s["name"])
    return names


def _items(judgments: list[dict], names: dict) -> dict[int, dict]:
    """item id -> {x, y (contestant names), label (human majority, model terms), skill, difficulty, prompt_key}."""
    items: dict[int, dict] = {}
    for r in judgments:
        it = items.setdefault(r["item_id"], {"x": names.get(r["model_a"], r["model_a"]),
                                             "y": names.get(r["model_b"], r["model_b"]), "labels": [],
                                             **{k: r[k] for k in ("skill", "difficulty", "prompt_key")}})
        it["labels"].append(r["label"])
    for it in items.values():
        it["label"] = report.majority(it["labels"])
    return items


def _from(it: dict, name: str) -> str:
    """The item's label from `name`'s side: a (name won), b (name lost) or tie."""
    label = report.model_label(it["label"])
    if label == "tie" or it["x"] == name:
        return label
    return {"a": "b", "b": "a"}[label]


def _score(label: str) -> float:
    return {"a": 1.0, "tie": 0.5, "b": 0.0}[label]


def _arms(store, exp: dict, view: dict, items: dict, contestants: list, n_boot: int, seed: int) -> list[dict]:
    ratings = {}
    if len(contestants) >= 2 and items:
        comps = [(it["x"], it["y"], {"a": "x", "b": "y"}.get(report.model_label(it["label"]), "tie"))
                 for it in items.values()]
        ratings = {r["model"]: r for r in stats.bradley_terry(comps, n_boot=min(n_boot, report.RATING_BOOT),
                                                              seed=seed)}
    out = []
    for arm in view["arms"]:
        export = _arm_export(store, exp, arm["name"])
        labels = [_from(it, arm["name"]) for it in items.values() if arm["name"] in (it["x"], it["y"])]
        wr = stats.win_rates(labels, n_boot=n_boot, seed=seed)
        out.append({"name": arm["name"], "recipe": arm["recipe"], "base_model": arm["base_model"],
                    "preset": arm["preset"], "status": arm["status"], "rows": export and export["n_rows"],
                    "content_hash": export and export["content_hash"], "profile": export and export["profile"],
                    "recipe_line": export and _recipe_line(export["spec"]), "n": wr["n"],
                    "win_rate": wr["win_rate_ties_half"], "ci": wr["ci"]["win_rate_ties_half"],
                    "win": wr["win"], "tie": wr["tie"], "loss": wr["loss"], "rating": ratings.get(arm["name"])})
    return out


def _recipe_line(spec: dict) -> str:
    from wizardlab.recipes import Recipe

    return Recipe.from_dict(spec).describe()


def _arm_export(store, exp: dict, arm_name: str) -> dict | None:
    arm = next(a for a in store.experiment_arms(exp["id"]) if a["name"] == arm_name)
    return store.recipe_export_by_run(arm["export_run_id"]) if arm["export_run_id"] else None


def _comparisons(items: dict, contestants: list, config: dict, n_boot: int, seed: int) -> list[dict]:
    """Every pair of contestants: head to head where they met, else each against the baseline."""
    out = []
    for x, y in itertools.combinations(contestants, 2):
        direct = [it for it in items.values() if {it["x"], it["y"]} == {x, y}]
        if direct:
            labels = [_from(it, x) for it in direct]
            pairs = [(_score(lab), 1.0 - _score(lab)) for lab in labels]
            how = "head to head"
        else:
            base = config.get("baseline")
            labels, pairs = _via_baseline(items, x, y, base)
            how = f"each vs {base}"
            if not pairs:
                continue
        wr = stats.win_rates(labels, n_boot=n_boot, seed=seed) if labels else None
        out.append({"x": x, "y": y, "how": how, "n": len(pairs),
                    "win_rate": wr and wr["win_rate_ties_half"], "ci": wr and wr["ci"]["win_rate_ties_half"],
                    **stats.paired_sign_test(pairs)})
    return out


def _via_baseline(items: dict, x: str, y: str, base: str | None) -> tuple[list, list]:
    """Paired scores of x and y against the baseline on the same prompts (labels stay empty)."""
    if not base or base in (x, y):
        return [], []
    scores = defaultdict(dict)
    for it in items.values():
        for name in (x, y):
            if {it["x"], it["y"]} == {name, base}:
                scores[it["prompt_key"]][name] = _score(_from(it, name))
    pairs = [(s[x], s[y]) for s in scores.values() if x in s and y in s]
    return [], pairs


def _breakdowns(items: dict, contestants: list, n_boot: int, seed: int) -> list[dict]:
    """Per contestant and group (skill, difficulty band, the >= 8 split): win rate against the field."""
    keys = {"skill": lambda it: it["skill"], "difficulty_band": lambda it: report.band(it["difficulty"]),
            "difficulty_split": lambda it: None if it["difficulty"] is None else (
                f">={report.HIGH_DIFFICULTY}" if float(it["difficulty"]) >= report.HIGH_DIFFICULTY
                else f"<{report.HIGH_DIFFICULTY}")}
    out = []
    for name in contestants:
        mine = [it for it in items.values() if name in (it["x"], it["y"])]
        for by, key in keys.items():
            groups = defaultdict(list)
            for it in mine:
                if key(it) is not None:
                    groups[str(key(it))].append(_from(it, name))
            for group, labels in sorted(groups.items()):
                wr = stats.win_rates(labels, n_boot=min(n_boot, 500), seed=seed)
                out.append({"arm": name, "by": by, "group": group, "n": wr["n"],
                            "win_rate": wr["win_rate_ties_half"], "ci": wr["ci"]["win_rate_ties_half"]})
    return out


def _llm(rows: list[dict], names: dict, campaign: dict, n_boot: int, seed: int) -> list[dict]:
    """Each LLM judge: every contestant's win rate in its verdicts, and its agreement with the humans."""
    out = []
    for judge in campaign["llm_judges"]:
        items = _items([r for r in rows if r["annotator"] == judge["judge"] and r["attention_label"] is None], names)
        contestants = list(dict.fromkeys(n for it in items.values() for n in (it["x"], it["y"])))
        per_arm = []
        for name in contestants:
            wr = stats.win_rates([_from(it, name) for it in items.values() if name in (it["x"], it["y"])],
                                 n_boot=n_boot, seed=seed)
            per_arm.append({"arm": name, "n": wr["n"], "win_rate": wr["win_rate_ties_half"],
                            "ci": wr["ci"]["win_rate_ties_half"]})
        out.append({"judge": judge["judge"], "n_items": judge["n_items"], "arms": per_arm,
                    "majority_agreement": judge["majority_agreement"], "majority_kappa": judge["majority_kappa"]})
    return out


# -- the plain-language summary ------------------------------------------------------------------
def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f" [{100 * ci[0]:.0f}-{100 * ci[1]:.0f}]"


def summary(rep: dict) -> str:
    """One paragraph: the clearest difference between arms, where it comes from, what the judge said."""
    if not rep["comparisons"]:
        return "No human judgments yet: judge the campaign, then read the report again."
    best = min(rep["comparisons"], key=lambda c: (c["p_value"] if c["p_value"] is not None else 2.0, -c["n"]))
    x, y = best["x"], best["y"]
    if best["x_better"] < best["y_better"]:
        x, y = y, x
    sentences = [_lead(best, x, y)]
    where = _where(rep["breakdowns"], x)
    if where:
        sentences.append(f"{x} did best in {where}.")
    for judge in rep["llm_judges"]:
        sentences.append(f"The LLM judge {judge['judge']} agreed with the human majority on "
                         f"{_pct(judge['majority_agreement'])} of the items it shares with them.")
    return " ".join(sentences)


def _lead(c: dict, x: str, y: str) -> str:
    wins = max(c["x_better"], c["y_better"])
    p = "n/a" if c["p_value"] is None else f"{c['p_value']:.3g}"
    verdict = "a significant difference" if c["p_value"] is not None and c["p_value"] < 0.05 else \
        "not a significant difference"
    if c["how"] == "head to head":
        rate = c["win_rate"] if x == c["x"] else 1.0 - c["win_rate"]
        ci = c["ci"] if x == c["x"] else [1.0 - c["ci"][1], 1.0 - c["ci"][0]]
        return (f"{x} beat {y} on {_pct(rate)}{_ci(ci)} of {c['n']} items (ties count half); it was better on "
                f"{wins} of the {c['n_untied']} items that were not ties (sign test p = {p}: {verdict}).")
    return (f"Against {c['how'][8:]}, {x} did better than {y} on {wins} of the {c['n_untied']} prompts where they "
            f"differed, out of {c['n']} (sign test p = {p}: {verdict}).")


def _where(breakdowns: list[dict], name: str) -> str:
    skills = sorted((b for b in breakdowns if b["arm"] == name and b["by"] == "skill" and b["n"] >= MIN_GROUP
                     and b["win_rate"] is not None and b["win_rate"] > 0.5), key=lambda b: -b["win_rate"])[:2]
    split = [b for b in breakdowns if b["arm"] == name and b["by"] == "difficulty_split" and b["win_rate"]]
    parts = [f"{b['group']} ({_pct(b['win_rate'])} of {b['n']})" for b in skills]
    if len(split) == 2:
        top = max(split, key=lambda b: b["win_rate"])
        parts.append(f"difficulty {top['group']} ({_pct(top['win_rate'])} of {top['n']})")
    return ", ".join(parts)


# -- pages ------------------------------------------------------------------------------------------
def tables(rep: dict) -> dict[str, list[dict]]:
    """The report as flat tables (CSV, the tab's data frames)."""
    def ci(row):
        c = row.get("ci") or [None, None]
        return {"ci_low": c[0], "ci_high": c[1]}

    arms = []
    for a in rep["arms"]:
        p = a["profile"] or {}
        r = a["rating"] or {}
        arms.append({"arm": a["name"], "recipe": a["recipe"], "data": a["recipe_line"], "rows": a["rows"],
                     "per_round": " ".join(f"r{k}:{v}" for k, v in p.get("per_round", {}).items()),
                     "mean_difficulty": p.get("mean_difficulty"), "dispersion": p.get("dispersion"),
                     "n_items": a["n"], "win_rate": a["win_rate"], **ci(a), "bt_rating": r.get("rating"),
                     "bt_ci_low": r.get("ci_low"), "bt_ci_high": r.get("ci_high"), "content_hash": a["content_hash"]})
    comps = [{k: v for k, v in c.items() if k != "ci"} | ci(c) for c in rep["comparisons"]]
    breakdowns = [{k: v for k, v in b.items() if k != "ci"} | ci(b) for b in rep["breakdowns"]]
    llm = [{"judge": j["judge"], "arm": a["arm"], "n": a["n"], "win_rate": a["win_rate"], **ci(a),
            "majority_agreement": j["majority_agreement"]} for j in rep["llm_judges"] for a in j["arms"]]
    return {"arms": arms, "comparisons": comps, "breakdowns": breakdowns, "llm_judges": llm,
            "summary": [{"summary": rep["summary"]}]}


def write_csv(rep: dict, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tables(rep).items():
        path = out_dir / f"{name}.csv"
        fields = list(dict.fromkeys(k for r in rows for k in r)) or ["empty"]
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    return written


def render_text(rep: dict) -> str:
    e = rep["experiment"]
    lines = [f"Experiment {e['id']} {e['name']!r} ({e['status']}), campaign {e['campaign_id']}: "
             f"{rep['n_judged_items']} judged items", "", rep["summary"], "", "Arms:"]
    for a in rep["arms"]:
        r = a["rating"]
        lines.append(f"  {a['name']}: {a['rows']} rows ({a['recipe_line']}); win rate {_pct(a['win_rate'])}"
                     f"{_ci(a['ci'])} of {a['n']}" + (f"; Bradley-Terry {r['rating']:.0f} [{r['ci_low']:.0f}, "
                                                       f"{r['ci_high']:.0f}]" if r else ""))
    lines += ["", "Paired comparisons:"]
    for c in rep["comparisons"]:
        p = "n/a" if c["p_value"] is None else f"{c['p_value']:.3g}"
        lines.append(f"  {c['x']} vs {c['y']} ({c['how']}, n={c['n']}): {c['x_better']}-{c['y_better']} untied, "
                     f"win rate {_pct(c['win_rate'])}{_ci(c['ci'])}, sign test p={p}")
    for j in rep["llm_judges"]:
        lines += ["", f"LLM judge {j['judge']} (agreement with humans {_pct(j['majority_agreement'])}):"]
        lines += [f"  {a['arm']}: win rate {_pct(a['win_rate'])}{_ci(a['ci'])} of {a['n']}" for a in j["arms"]]
    return "\n".join(lines)


def write_html(rep: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(rep), encoding="utf-8")
    return path


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#1e293b}"
          "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #cbd5e1;"
          "padding:4px 8px;text-align:left}th{background:#eef2ff}.summary{background:#f8fafc;padding:1em;"
          "border-left:4px solid #6366f1}")


def render_html(rep: dict) -> str:
    """One self-contained page: summary, a win-rate chart (inline SVG), and every table."""
    e = rep["experiment"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Experiment {html.escape(e['name'])}"
             f"</title><style>{_STYLE}</style></head><body>",
             f"<h1>Experiment {html.escape(e['name'])}</h1><p class='summary'>{html.escape(rep['summary'])}</p>",
             _svg_chart(rep["arms"])]
    for name, rows in tables(rep).items():
        if name == "summary" or not rows:
            continue
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>{_html_table(rows)}")
    return "".join(parts) + "</body></html>\n"


def _html_table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _svg_chart(arms: list[dict]) -> str:
    """Horizontal bars: each arm's human win rate (ties half) with its 95% interval; 50% marked."""
    width, left, row_h = 640, 160, 28
    scale = lambda v: left + v * (width - left - 20)  # noqa: E731
    rows = []
    for i, a in enumerate(arms):
        y = 10 + i * row_h
        rows.append(f"<text x='{left - 8}' y='{y + 15}' text-anchor='end' font-size='13'>{html.escape(a['name'])}"
                    "</text>")
        if a["win_rate"] is not None:
            rows.append(f"<rect x='{left}' y='{y + 4}' width='{scale(a['win_rate']) - left:.1f}' height='16' "
                        "fill='#818cf8'/>")
            lo, hi = a["ci"] or [a["win_rate"], a["win_rate"]]
            rows.append(f"<line x1='{scale(lo):.1f}' x2='{scale(hi):.1f}' y1='{y + 12}' y2='{y + 12}' "
                        "stroke='#1e293b' stroke-width='2'/>")
    height = 20 + len(arms) * row_h
    mid = scale(0.5)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
            f"aria-label='win rate per arm'>{''.join(rows)}<line x1='{mid:.1f}' x2='{mid:.1f}' y1='0' "
            f"y2='{height}' stroke='#94a3b8' stroke-dasharray='4'/></svg>")
