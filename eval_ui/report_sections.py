"""HTML for the report's paper figures and trust sections (Evaluate tab).

Renders parts of `wizardlab.evaluation.report.build_report`'s dict: judgment-level win /
tie / loss beside the per-item figure, the capacity ratio as a bar chart per skill and
category (like the WizardLM paper's GPT-4 figure, with 95% intervals as whiskers and a
line at 100%), length-controlled win rates with their warnings, fragility, "conclusive
yet?" and the LLM judges' report cards. Each section carries its one-sentence explanation
from `report.NOTES`. All text from the store goes through `render.esc`; nothing here
touches the store.
"""

from __future__ import annotations

from eval_ui import render

CHART_MAX = 1.2  # the capacity chart spans 0-120%

STYLE = """<style>
.wl-cap { display: grid; grid-template-columns: minmax(120px, max-content) 1fr 200px; gap: 3px 10px;
          align-items: center; max-width: 760px; font-size: 0.9em; }
.wl-cap-track { position: relative; height: 16px; background: #f1f5f9; border-radius: 3px; }
.wl-cap-fill { position: absolute; left: 0; top: 0; bottom: 0; background: #6366f1; border-radius: 3px; }
.wl-cap-low { background: #f97316; }
.wl-cap-ci { position: absolute; top: 7px; height: 2px; background: #0f172a; }
.wl-cap-100 { position: absolute; top: -2px; bottom: -2px; width: 0; border-left: 2px dashed #0f172a; }
.wl-why { color: #64748b; font-size: 0.85em; margin: 2px 0 10px; }
.wl-warn { color: #b45309; font-weight: 600; }
</style>"""


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f"[{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"


def _why(rep: dict, key: str) -> str:
    return f'<div class="wl-why">{render.esc(rep["notes"][key])}</div>'


def judgment_level_html(rep: dict) -> str:
    rows = [j for j in rep.get("judgment_level", []) if j["by"] in ("all", "difficulty_split")]
    if not rows:
        return "<h4>Humans: win / tie / loss over all judgments</h4>" + render.note("No human judgments yet.", "info")
    table = render.table(
        ["group", "first model", "second model", "judgments", "items", "first wins", "tie", "second wins"],
        [[j["group"], j["model_a"], j["model_b"], j["n"], j["n_items"],
          f"{j['counts']['a']} · {_pct(j['win'])} {_ci(j['ci']['win'])}",
          f"{j['counts']['tie']} · {_pct(j['tie'])} {_ci(j['ci']['tie'])}",
          f"{j['counts']['b']} · {_pct(j['loss'])} {_ci(j['ci']['loss'])}"] for j in rows])
    return ("<h4>Humans: win / tie / loss over all judgments (the paper's count)</h4>" + table
            + _why(rep, "judgment_level"))


def _cap_row(label: str, g: dict) -> str:
    ratio = g["ratio"]
    width = 0 if ratio is None else min(100.0, 100 * ratio / CHART_MAX)
    low = " wl-cap-low" if ratio is not None and ratio < 0.9 else ""
    whisker = ""
    if g.get("ci") and g["ci"][0] is not None:
        lo, hi = (min(100.0, 100 * x / CHART_MAX) for x in g["ci"])
        whisker = f'<div class="wl-cap-ci" style="left:{lo:.1f}%;width:{max(hi - lo, 0.3):.1f}%"></div>'
    return (f"<div>{render.esc(label)}</div><div class=\"wl-cap-track\">"
            f'<div class="wl-cap-fill{low}" style="width:{width:.1f}%"></div>{whisker}'
            f'<div class="wl-cap-100" style="left:{100 / CHART_MAX:.2f}%"></div></div>'
            f"<div>{_pct(ratio)} <span class=\"wl-muted\">{_ci(g.get('ci'))} n={g['n']}</span></div>")


def capacity_html(rep: dict) -> str:
    """One chart per score-giving judge and pair: overall, then a bar per skill and category."""
    parts = []
    for c in rep.get("capacity", []):
        counts = ", ".join(f"{v['n_at_least']} of {v['n_groups']} {by} groups" for by, v in c["at_least_90"].items()
                           if by != "difficulty_split")
        rows = [_cap_row("overall", c)] + [_cap_row(f"{g['group']}", g) for g in c["groups"]
                                           if g["by"] in ("skill", "category", "difficulty_split")]
        parts.append(f"<h4>Capacity of {render.esc(c['model_a'])} relative to {render.esc(c['model_b'])} "
                     f"({render.esc(c['judge'])}, total {c['total_a']:g} / {c['total_b']:g}; at least 90% on "
                     f"{render.esc(counts or 'no')})</h4><div class=\"wl-cap\">{''.join(rows)}</div>"
                     + _why(rep, "capacity"))
    return "".join(parts)


def trust_html(rep: dict) -> str:
    parts = []
    lc = rep.get("length_controlled", [])
    if lc:
        warnings = "".join(f'<div class="wl-warn">{render.esc(r["judges"])}: {render.esc(r["warning"])}</div>'
                           for r in lc if r["warning"])
        parts.append("<h4>Length- and style-controlled win rate of the first model</h4>" + warnings + render.table(
            ["judges", "first model", "second model", "judgments", "raw", "controlled", "length coef."],
            [[r["judges"], r["model_a"], r["model_b"], r["n"], _pct(r["raw"]),
              f"{_pct(r['controlled'])} {_ci(r['ci'])}",
              "–" if not r["coefficients"] else f"{r['coefficients']['length']:.2f}"] for r in lc])
            + _why(rep, "length_controlled"))
    frag = list(zip(rep.get("fragility", []), rep.get("conclusive", [])))
    if frag:
        parts.append("<h4>How fragile, and conclusive yet?</h4>" + render.table(
            ["first model", "second model", "leader", "lead (items)", "judgments that end it", "their ids",
             "conclusive yet", "Bayes factor"],
            [[f["model_a"], f["model_b"], _leader(f), f["per_item"]["margin"], f["per_item"]["n_to_flip"],
              render.short(" ".join(map(str, f["per_item"]["judgment_ids"])), 80),
              "yes" if c["conclusive"] else "no", f"{c['bayes_factor']:.3g} (needs {c['threshold']:g})"]
             for f, c in frag]) + _why(rep, "fragility") + _why(rep, "conclusive"))
    return "".join(parts) + judge_cards_html(rep)


def _leader(f: dict) -> str:
    lead = f["per_item"]["leader"]
    return "none" if lead is None else f["model_a"] if lead == "a" else f["model_b"]


def judge_cards_html(rep: dict) -> str:
    cards = rep.get("judge_cards", [])
    if not cards:
        return ""
    rows = [[c["judge"], c["n"], _pct(c["majority_agreement"]), _pct(c["human_ceiling"]),
             f"{_pct(c['flip_rate'])} of {c['n_swapped']}", _pct(c["longer_preference"]["share"]),
             _pct(c["humans_longer_preference"]["share"]), _pct(c["list_preference"]["share"]),
             "; ".join(f"{s['model']}: {_pct(s['judge_win_rate'])} vs humans {_pct(s['humans_win_rate'])}"
                       for s in c["self_preference"]) or "–"] for c in cards]
    return ("<h4>LLM judge report cards</h4>" + render.table(
        ["judge", "verdicts", "agrees with human majority", "humans among themselves", "flips on swap",
         "picks longer", "humans pick longer", "picks more lists", "own family wins"], rows)
        + _why(rep, "judge_cards"))


def plan_html(p: dict, k: int, margin: float, power: float) -> str:
    """The planner's answer (`trust.plan`) in one sentence and a small table."""
    line = (f"{p['n_items']} items × {k} judgments = {p['n_judgments']} judgments detect a margin of {margin:+.2f} "
            f"with power {power:g} (two-sided sign test on the non-tie votes, alpha 0.05).")
    return render.note(line, "ok") + render.table(
        ["P(first wins)", "P(second wins)", "non-tie votes needed", "design effect", "items", "judgments"],
        [[f"{p['p_a']:.3f}", f"{p['p_b']:.3f}", p["n_nontie_votes"], f"{p['design_effect']:.2f}", p["n_items"],
          p["n_judgments"]]])


def sections_html(rep: dict) -> str:
    """Everything this module renders, in the order the Evaluate tab shows it."""
    return STYLE + judgment_level_html(rep) + capacity_html(rep) + trust_html(rep)
