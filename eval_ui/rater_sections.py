"""HTML for rater quality and identity leaks (Evaluate tab, issue 14 points 2-4 and 8).

Renders `build_report`'s `raters` and `identity_leaks` parts: a card per rater (gold accuracy,
flips on swapped repeats, left-side and tie rates, median time, agreement, flags), what leaving
the flagged raters out changes, the paused raters as a warning for the lead, and the identity
hits waiting for the lead; plus `html_page`, the exported self-contained HTML report. All text
from the store goes through `render.esc`; nothing here touches the store.
"""

from __future__ import annotations

from eval_ui import render

STYLE = """<style>
.wl-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 10px; margin: 6px 0 10px; }
.wl-card { border: 1px solid #cbd5e1; border-radius: 10px; padding: 8px 12px; font-size: 0.88em; }
.wl-card.wl-flagged { border-color: #f97316; background: #fff7ed; }
.wl-card h5 { margin: 0 0 4px; font-size: 1.05em; }
.wl-card dl { display: grid; grid-template-columns: max-content 1fr; gap: 1px 10px; margin: 0; }
.wl-card dt { color: #64748b; } .wl-card dd { margin: 0; font-variant-numeric: tabular-nums; }
.wl-flag { display: inline-block; background: #fed7aa; color: #9a3412; border-radius: 6px; padding: 0 6px;
           margin: 2px 3px 0 0; font-size: 0.85em; }
.wl-bad { color: #c2410c; font-weight: 600; }
</style>"""

PAGE_CSS = """body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #0f172a; }
.wl-table { border-collapse: collapse; width: 100%; font-size: 0.85rem; margin-bottom: 10px; }
.wl-table th, .wl-table td { border-bottom: 1px solid #e2e8f0; padding: 4px 8px; text-align: left; }
.wl-table th { font-weight: 600; color: #475569; }
.wl-note { padding: 6px 10px; border-radius: 8px; background: #eef2ff; margin: 6px 0; }
.wl-note-warn { background: #fef3c7; } .wl-muted { color: #64748b; }"""


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _bad(text: str, bad: bool) -> str:
    return f'<span class="wl-bad">{text}</span>' if bad else text


def card_html(c: dict) -> str:
    flags = set(c["flags"])
    rows = [("gold", _bad(f"{_pct(c['gold_accuracy'])} of {c['gold_n']}", "failed_gold" in flags)),
            ("flips on repeats", _bad(f"{_pct(c['flip_rate'])} of {c['repeat_n']}", "inconsistent" in flags)),
            ("left side", _bad(f"{_pct(c['left_rate'])} of {c['left_n']}", "left_side" in flags)),
            ("ties", _pct(c["tie_rate"])),
            ("median time", _bad("–" if c["median_seconds"] is None else f"{c['median_seconds']:.1f} s",
                                 "too_fast" in flags)),
            ("agreement", f"{_pct(c['agreement'])} of {c['n_compared']}"),
            ("judgments", f"{c['n']} ({c['n_all']} with checks)")]
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    chips = "".join(f'<span class="wl-flag">{render.esc(f)}</span>' for f in c["flags"])
    reason = f'<div class="wl-muted">{render.esc(c["pause_reason"])}</div>' if c["pause_reason"] else ""
    cls = "wl-card wl-flagged" if c["flags"] else "wl-card"
    return (f'<div class="{cls}" data-rater="{render.esc(c["annotator"])}"><h5>{render.esc(c["annotator"])}</h5>'
            f"<dl>{body}</dl>{chips}{reason}</div>")


def raters_html(rep: dict) -> str:
    r = rep.get("raters") or {}
    if not r.get("cards"):
        return ""
    parts = [STYLE, "<h4>Rater cards</h4>"]
    if r["paused"]:
        parts.append(render.note("Paused on this campaign (their open items went back to the pool): "
                                 + ", ".join(r["paused"]) + ". Resume a rater under Campaigns → Manage.", "warn"))
    parts.append('<div class="wl-cards">' + "".join(card_html(c) for c in r["cards"]) + "</div>")
    if r["excluded"]:
        parts.append(render.note("Left out of every figure of this report: " + ", ".join(r["excluded"]), "info"))
    if r["effect"]:
        parts.append(f"<b>Without the flagged raters</b> ({render.esc(', '.join(r['flagged']) or 'none flagged')}):"
                     + render.table(["first model", "second model", "items", "win rate (ties ½), everyone",
                                     "without flagged", "change"],
                                    [[e["model_a"], e["model_b"], e["n_all"], _pct(e["win_rate_all"]),
                                      _pct(e["win_rate_without_flagged"]),
                                      "–" if e["change"] is None else f"{100 * e['change']:+.1f} points"]
                                     for e in r["effect"]]))
    parts.append(f'<div class="wl-why">{render.esc(rep["notes"]["raters"])}</div>')
    return '<div class="wl-raters">' + "".join(parts) + "</div>"


def leaks_html(hits: list[dict], note: str = "") -> str:
    """Identity hits as a table (id, status, model, matched words, the sentence)."""
    if not hits:
        return ""
    n_open = sum(h["status"] == "open" for h in hits)
    head = render.note(f"{n_open} identity leak{'s' * (n_open != 1)} to resolve before annotators see this campaign: "
                       "edit the answer, drop its items, or keep it (a false alarm)." if n_open else
                       "Identity leaks: all resolved.", "warn" if n_open else "ok")
    return head + render.table(["hit", "status", "model", "matched", "sentence"],
                               [[h["id"], h["status"], h["model"], h["match"], render.short(h["context"], 160)]
                                for h in hits]) + (f'<div class="wl-why">{render.esc(note)}</div>' if note else "")


def html_page(title: str, body: str) -> str:
    """A self-contained HTML document (inline CSS, no scripts, no external files)."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{render.esc(title)}</title>'
            f"<style>{PAGE_CSS}</style></head><body><h2>{render.esc(title)}</h2>{body}</body></html>")
