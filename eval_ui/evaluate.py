"""Evaluate tab (admins): output sets, campaigns, progress, the report, exports and the LLM judge.

- Output sets: import a JSONL/CSV output file (or a Vicuna answer file with its question
  file), or generate one from a test set with the app's LLM (a `generate` job).
  The model is the app's LLM, a finished training run's model directory or a typed local
  directory (like `python -m pipeline generate --model DIR`).
- Campaigns: two or more output sets, one pair or all pairs, k, guidelines, "both bad",
  rationale, attention checks; rater quality (gold and repeated items, gold threshold, routing
  to the widest interval); release idle assignments (`campaign release`); resolve identity
  leaks (`campaign leaks|resolve`); pause or resume a rater (`campaign pause|resume`).
- Import judgments: PandaLM, llmfao, open-instruct, generic CSV, Vicuna GPT-4 reviews and
  FairEval labels into a campaign (`python -m pipeline import-judgments`).
- Agreement of a file: the figures of `python -m pipeline agreement` as tables; the store
  is not touched.
- Report: progress per annotator, win / tie / loss bars with 95% intervals per item and
  over all judgments (the paper's count), ratings, difficulty split, position bias,
  agreement, annotators with flags, LLM judges, the capacity ratio chart of score-giving
  judges, length-controlled win rates, fragility and judge cards (`eval_ui.report_sections`);
  rater cards, paused raters and what leaving the flagged ones out changes, optionally with
  them left out (`eval_ui.rater_sections`); JSON, CSV and a self-contained HTML export.
- LLM judge: start it (a `judge` job) on a campaign, pairwise verdicts or Vicuna-style 1-10
  scores of both answers (`python -m pipeline judge --mode pairwise|score`).
Every callback checks `ctx.require_admin(request)` on the server; nothing with a model
name is filled in at build time (annotators receive the page config too), only by
admin-only callbacks. Library calls: `wizardlab.evaluation` and its report module.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from eval_ui import rater_sections, render, report_sections
from eval_ui.context import AppContext, on_show, ui_errors
from wizardlab import evaluation as ev
from wizardlab import jobs
from wizardlab.errors import UserError
from wizardlab.evaluation import report as rp
from wizardlab.evaluation import trust
from wizardlab.evaluation.judge import start_judging
from wizardlab.training.base_models import resolve_model
from wizardlab.config import default_cache_dir
from wizardlab.evaluation.formats import FORMATS, load_judgments, to_records

IMPORT_FORMATS = ("auto", *FORMATS, "vicuna-review", "faireval")
APP_LLM, LOCAL_DIR = "app", "dir"
MAX_PAIRS_SHOWN = 30


# -- plain functions of the store (testable without a browser) ---------------------------
def sets_table(store) -> str:
    rows = [[s["id"], s["name"], s["model"], s["testset"], s["source"], s["n_outputs"], render.when(s["created_at"])]
            for s in store.list_output_sets()]
    if not rows:
        return render.note("No output sets yet: import a file or generate one.", "info")
    return render.table(["id", "name", "model", "test set", "source", "outputs", "created"], rows)


def campaigns_table(store) -> str:
    rows = [[c["id"], c["name"], c["status"], c["n_items"], c["k"], c["n_judgments"]] for c in store.list_campaigns()]
    if not rows:
        return render.note("No campaigns yet.", "info")
    return render.table(["id", "name", "status", "items", "k", "judgments"], rows)


def jobs_html(store) -> str:
    runs = [r for r in store.list_runs(limit=50) if r["kind"] in ("generate", "judge")][:8]
    if not runs:
        return ""
    rows = []
    for r in runs:
        p = r["progress"] or {}
        done = f"{p.get('done', 0)}/{p.get('total', '?')}" if p else ""
        rows.append([r["id"], r["kind"], r["name"] or "", r["status"], done, render.short(r.get("error") or "", 80)])
    return render.table(["run", "kind", "what", "status", "progress", "error"], rows)


def _bar(p: dict) -> str:
    seg = lambda v, cls: f'<div class="wl-wtl-{cls}" style="width:{100 * (v or 0):.1f}%"></div>'  # noqa: E731
    return f'<div class="wl-wtl">{seg(p["win"], "w")}{seg(p["tie"], "t")}{seg(p["loss"], "l")}</div>'


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f"[{100 * ci[0]:.0f}–{100 * ci[1]:.0f}]"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x, fmt="{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


def pairs_html(pairs: list[dict], title: str) -> str:
    if not pairs:
        return render.note(f"{title}: no judgments yet.", "info")
    rows = "".join(
        f'<tr><td>{render.esc(p["model_a"])}</td><td>{render.esc(p["model_b"])}</td><td>{p["n"]}</td>'
        f'<td class="wl-wtl-cell">{_bar(p)}</td><td>{_pct(p["win"])} {_ci(p["ci"]["win"])}</td>'
        f'<td>{_pct(p["tie"])} {_ci(p["ci"]["tie"])}</td><td>{_pct(p["loss"])} {_ci(p["ci"]["loss"])}</td>'
        f'<td>{_pct(p["win_rate_ties_half"])}</td></tr>' for p in pairs)
    head = "".join(f"<th>{h}</th>" for h in ("first model", "second model", "items", "win / tie / loss",
                                              "first wins", "tie", "second wins", "win rate (ties ½)"))
    legend = ('<span class="wl-muted"> bars: <b style="color:#6366f1">first wins</b> · <b style="color:#94a3b8">'
              'tie</b> · <b style="color:#f97316">second wins</b></span>')
    return f'<h4>{render.esc(title)}{legend}</h4><table class="wl-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def report_html(rep: dict) -> str:
    parts = [pairs_html(rep["pairs"], "Humans: win / tie / loss of the first model (per item, 95% bootstrap CI)"),
             f'<div class="wl-why">{render.esc(rep["notes"]["pairs"])}</div>',
             report_sections.judgment_level_html(rep), report_sections.capacity_html(rep)]
    if rep["ratings"]:
        parts.append("<h4>Bradley-Terry ratings (Elo scale, 95% CI)</h4>" + render.table(
            ["model", "rating", "CI", "items"],
            [[r["model"], f"{r['rating']:.0f}", f"{r['ci_low']:.0f}–{r['ci_high']:.0f}", r["n"]] for r in rep["ratings"]]))
    for title, kinds in (("By difficulty (the paper's ≥ 8 split and bands)", ("difficulty_split", "difficulty_band")),
                         ("By skill / category", ("skill", "category"))):
        rows = [b for b in rep["breakdowns"] if b["by"] in kinds]
        if rows:
            parts.append(f"<h4>{title}</h4>" + render.table(
                ["by", "group", "first", "second", "n", "first wins", "tie", "second wins"],
                [[b["by"], b["group"], b["model_a"], b["model_b"], b["n"], _pct(b["win"]), _pct(b["tie"]),
                  _pct(b["loss"])] for b in rows]))
    pb, a = rep["position_bias"], rep["agreement"]
    parts.append("<h4>Position bias and agreement</h4>" + render.table(
        ["left wins", "non-tie votes", "p", "percent agreement", "without ties", "Cohen κ mean", "Fleiss κ",
         "Krippendorff α"],
        [[f"{_pct(pb['left_win_rate'])} {_ci(pb['ci'])}", pb["n"], _num(pb["p_value"]), _pct(a["percent_agreement"]),
          _pct(a["percent_agreement_without_ties"]), _num(a["cohen_kappa_mean"]), _num(a["fleiss_kappa"]),
          _num(a["krippendorff_alpha"])]]))
    if a["cohen_kappa_pairs"]:
        parts.append(render.table(["annotator", "annotator", "shared items", "Cohen κ"],
                                  [[p["a"], p["b"], p["n"], _num(p["kappa"])] for p in a["cohen_kappa_pairs"][:30]]))
    if rep["annotators"]:
        parts.append("<h4>Annotators (agreement with the others' majority)</h4>" + render.table(
            ["annotator", "judgments", "agreement", "κ", "median s/item", "attention", "flags"],
            [[r["annotator"], r["n"], _pct(r["agreement"]), _num(r["kappa"]), _num(r["median_seconds"], "{:.1f}"),
              _pct(r["attention_accuracy"]), " ".join(r["flags"])] for r in rep["annotators"]]))
    parts.append(rater_sections.raters_html(rep))
    parts.append(rater_sections.leaks_html(rep.get("identity_leaks") or [], rep["notes"].get("identity_leaks", "")))
    for j in rep["llm_judges"]:
        parts.append(f"<h4>LLM judge {render.esc(j['judge'])} vs humans</h4>" + render.table(
            ["items", "with human majority", "agreement", "without ties", "κ", "per-vote agreement"],
            [[j["n_items"], j["n_with_majority"], _pct(j["majority_agreement"]),
              _pct(j["majority_agreement_without_ties"]), _num(j["majority_kappa"]), _pct(j["vote_agreement"])]])
            + pairs_html(j["pairs"], f"{j['judge']}: its own verdicts"))
    parts.append(report_sections.trust_html(rep))
    return STYLE + report_sections.STYLE + "".join(parts)


def progress_html(store, campaign_id: int) -> str:
    rows = [[a["annotator"], a["done"], a["skipped"], a["open"], _num(a["mean_seconds"], "{:.1f}")]
            for a in store.campaign_progress(campaign_id)]
    fill = store.campaign_fill(campaign_id)
    c = store.campaign(campaign_id)
    full = sum(v for k, v in fill.items() if k >= c["k"])
    total = sum(fill.values())
    head = render.bar(full, total, f"{full} of {total} items have {c['k']} human judgments")
    return head + (render.table(["annotator", "done", "skipped", "open", "mean s/item"], rows) if rows else
                   render.note("Nobody has judged yet.", "info"))


def export(rep: dict, out_dir: Path) -> tuple[str, str, str]:
    """report.json, a zip of the CSV tables and report.html (the tab's report, self-contained); their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "report.json"
    js.write_text(json.dumps(rep, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    rp.write_csv(rep, out_dir / "csv")
    zipped = shutil.make_archive(str(out_dir / "report_csv"), "zip", out_dir / "csv")
    page = out_dir / "report.html"
    c = rep["campaign"]
    page.write_text(rater_sections.html_page(f"Campaign {c['id']} {c['name']}: report", report_html(rep)),
                    encoding="utf-8")
    return str(js), zipped, str(page)


def agreement_html(result: dict, annotators: list[dict]) -> str:
    """`stats.agreement` (and the flagged annotators) as small tables, like `pipeline agreement`."""
    r = result
    parts = [render.table(
        ["items", "annotators", "judgments", "percent agreement", "without ties", "Cohen κ mean", "Fleiss κ",
         "Krippendorff α"],
        [[r["n_items"], r["n_annotators"], r["n_judgments"], _pct(r["percent_agreement"]),
          _pct(r["percent_agreement_without_ties"]), _num(r["cohen_kappa_mean"]), _num(r["fleiss_kappa"]),
          _num(r["krippendorff_alpha"])]])]
    if r["fleiss_kappa"] is None:
        parts.append(render.note("Fleiss' κ needs the same number (≥ 2) of raters on every item.", "info"))
    pairs = sorted(r["cohen_kappa_pairs"], key=lambda p: -p["n"])
    if pairs:
        more = (f" (the {MAX_PAIRS_SHOWN} with most shared items of {len(pairs)})"
                if len(pairs) > MAX_PAIRS_SHOWN else "")
        parts.append(f"<h4>Cohen's κ per pair of annotators{more}</h4>" + render.table(
            ["annotator", "annotator", "shared items", "Cohen κ"],
            [[p["a"], p["b"], p["n"], _num(p["kappa"])] for p in pairs[:MAX_PAIRS_SHOWN]]))
    flagged = [a for a in annotators if a["flag"]]
    if flagged:
        parts.append("<h4>Annotators flagged for low agreement with the others' majority</h4>" + render.table(
            ["annotator", "compared items", "agreement", "κ"],
            [[a["annotator"], a["n_compared"], _pct(a["agreement"]), _num(a["kappa"])] for a in flagged]))
    return "".join(parts)


def file_agreement(path: str, fmt: str = "auto") -> str:
    """Agreement of a judgments file (any label strings in a generic CSV), as HTML tables."""
    records = to_records(load_judgments(Path(path), fmt or "auto", keep_labels=True))
    from wizardlab.evaluation import stats  # scipy/sklearn/statsmodels: only once the input is read

    try:
        result = stats.agreement(records)
    except ValueError as exc:
        raise UserError(f"{Path(path).name}: {exc}") from None
    return agreement_html(result, stats.annotator_report(records))


IMPORT_LABELS = {"campaign_id": "campaign", "judgments_read": "judgments read", "judgments_added": "judgments added",
                 "items": "items", "judged": "items judged", "not_in_campaign": "not in the campaign"}


def import_result_html(campaign: str, result: dict) -> str:
    head = render.note(f"Imported into campaign {campaign!r}.", "ok")
    return head + render.table([IMPORT_LABELS.get(k, k) for k in result], [list(result.values())])


def trained_models(store) -> list[dict]:
    """Finished training runs that saved a model directory (newest first)."""
    return [r for r in store.list_runs("train") if r["status"] == "done" and r["config"].get("model_dir")]


def model_choices(store) -> list[tuple[str, str]]:
    runs = [(f"Training run {r['id']}: {render.short(r['name'] or '', 40)} ({r['config']['model_dir']})",
             f"run:{r['id']}") for r in trained_models(store)]
    return [("The app's LLM (named in the header)", APP_LLM), *runs,
            ("A local model directory (type it below)", LOCAL_DIR)]


def model_dir_of(store, choice: str, typed: str | None) -> str | None:
    """The model directory a generation choice names (None: the app's LLM); UserError when unusable."""
    choice = (choice or APP_LLM).strip()
    if choice == APP_LLM:
        return None
    name = (typed or "").strip() if choice == LOCAL_DIR else choice
    if not name:
        raise UserError("type the local model directory to generate with")
    return resolve_model(name, store=store, cache_dir=default_cache_dir(), allow_hub=False)


def vicuna_review_copy(review: str, answers: list[str] | None, tmp: Path) -> Path:
    """Lay the uploaded review and answer files out as FastChat's table/ tree (review/<dir>/, answer/)."""
    if not answers:
        raise UserError("Vicuna reviews need the answer files (answer_*.jsonl) whose answer ids they name")
    (tmp / "table" / "answer").mkdir(parents=True)
    (tmp / "table" / "review" / "upload").mkdir(parents=True)
    for i, path in enumerate(answers):
        name = Path(path).name
        shutil.copy(path, tmp / "table" / "answer" / (name if name.startswith("answer_") and name.endswith(".jsonl")
                                                      else f"answer_{i}_{Path(name).stem}.jsonl"))
    dest = tmp / "table" / "review" / "upload" / Path(review).name
    shutil.copy(review, dest)
    return dest


STYLE = """<style>
.wl-wtl { display: flex; height: 16px; width: 220px; border-radius: 8px; overflow: hidden; background: #e2e8f0; }
.wl-wtl-w { background: #6366f1; } .wl-wtl-t { background: #cbd5e1; } .wl-wtl-l { background: #f97316; }
.wl-wtl-cell { min-width: 230px; }
</style>"""


def assign_html(rows: list[dict]) -> str:
    """The accounts `assign_annotators` made or found; a generated password is shown this once."""
    made = sum(r["created"] for r in rows)
    head = render.note(f"{made} account{'s' * (made != 1)} created, {len(rows) - made} already there. "
                       "Hand each new password over privately; it is not shown again.", "ok")
    return head + render.table(["user", "account", "password"], [
        [r["username"], "created" if r["created"] else "exists", r["password"] or ""] for r in rows])


def _paths(value) -> list[str]:
    """An upload box's value as a list of paths (one file, several, or none)."""
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


# -- callbacks ----------------------------------------------------------------------------
class Evaluate:
    """The tab's callbacks. Each checks the admin role on the server before anything else."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def refresh(self, request: gr.Request):
        if not self.ctx.is_admin(request):  # annotators load the page too: stay silent
            return (gr.skip(),) * 10
        store = self.ctx.store()
        jobs.refresh(store)
        sets = [(f"{s['id']}: {s['name']}", s["id"]) for s in store.list_output_sets()]
        camps = [(f"{c['id']}: {c['name']} ({c['status']})", c["id"]) for c in store.list_campaigns()]
        testsets = [t["testset"] for t in store.testsets()]
        names = [(f"{c['id']}: {c['name']}", c["name"]) for c in store.list_campaigns()]
        return (sets_table(store), campaigns_table(store), gr.Dropdown(choices=sets), gr.Dropdown(choices=camps),
                gr.Dropdown(choices=camps), gr.Dropdown(choices=camps), gr.Dropdown(choices=testsets),
                jobs_html(store), gr.Dropdown(choices=names), gr.Dropdown(choices=model_choices(store)))

    def import_file(self, paths, testset_path, model: str, name: str, request: gr.Request):
        """Output files (several Vicuna answer files at once) with the test set file they answer."""
        self.ctx.require_admin(request)
        files = _paths(paths)
        if not files:
            raise UserError("choose an output file to import")
        if name and (name or "").strip() and len(files) > 1:
            raise UserError("an output set name fits one file; leave it empty to name each set after its model")
        created = ev.import_outputs_files(self.ctx.store(), files, testset_file=testset_path or None,
                                          model=(model or "").strip() or None, name=(name or "").strip() or None)
        return render.note("Imported " + ", ".join(f"{s['name']} ({s['n_outputs']} outputs)" for s in created), "ok")

    def generate(self, testset: str, testset_path, name: str, model_choice: str = APP_LLM, model_dir: str = "",
                 request: gr.Request = None):
        user = self.ctx.require_admin(request)
        from wizardlab.evaluation.generate import start_generation

        store = self.ctx.store()
        local = model_dir_of(store, model_choice, model_dir)  # like `generate --model DIR` without an endpoint
        settings = self.ctx.settings if local is None else dataclasses.replace(self.ctx.settings, base_url=None,
                                                                                model=local)
        run_id, status = start_generation(store, settings, testset=testset or None, testset_file=testset_path or None,
                                          name=(name or "").strip() or None, created_by=user["username"],
                                          log_dir=self.ctx.log_dir)
        return render.note(f"Generation run {run_id} {status}.", "ok"), gr.Timer(active=True)

    def create(self, name, sets, pairs, k, guidelines, both_bad, rationale, attention, gold=0.0, repeats=0.0,
               threshold=0.7, routing="order", request: gr.Request = None):
        user = self.ctx.require_admin(request)
        store = self.ctx.store()
        cid = ev.create_campaign(store, name or "", sets or [], pairs=pairs, k=int(k or 3),
                                 guidelines=guidelines or ev.DEFAULT_GUIDELINES, allow_both_bad=bool(both_bad),
                                 rationale=bool(rationale), attention_checks=int(attention or 0),
                                 created_by=user["username"], gold_share=float(gold or 0),
                                 repeat_share=float(repeats or 0), gold_threshold=float(0.7 if threshold is None
                                                                                         else threshold),
                                 routing=routing or "order")
        n = len(store.campaign_items(cid, include_attention=True))
        hits = store.identity_hits(cid)
        if hits:
            return render.note(f"Campaign {cid} created with {n} items and held: {len(hits)} answers name a model or "
                               "vendor. Resolve them under Manage a campaign; annotators see nothing until then.",
                               "warn") + rater_sections.leaks_html(hits)
        return render.note(f"Campaign {cid} created with {n} items. Annotators find it in the Judge tab.", "ok")

    def resolve(self, campaign_id, hit_id, action: str, text: str, request: gr.Request):
        """`pipeline campaign resolve C HIT --edit FILE | --drop | --keep`."""
        user = self.ctx.require_admin(request)
        if not campaign_id or hit_id in (None, ""):
            raise UserError("choose a campaign and type the hit number")
        out = ev.resolve_identity(self.ctx.store(), int(campaign_id), int(hit_id), action or "", text=text or None,
                                  by=user["username"])
        note = render.note(f"Hit {int(hit_id)} {out['status']}; {out['open_left']} left; the campaign is "
                           f"{out['campaign_status']}.", "ok")
        return note, self.status(campaign_id, request)

    def rater(self, paused: bool):
        def handler(campaign_id, name: str, request: gr.Request):
            """`pipeline campaign pause|resume C --annotator NAME`."""
            user = self.ctx.require_admin(request)
            if not campaign_id or not (name or "").strip():
                raise UserError("choose a campaign and type the rater's user name")
            n = ev.set_rater(self.ctx.store(), int(campaign_id), name.strip(), "paused" if paused else "active",
                             reason=f"paused by {user['username']}" if paused else None, by=user["username"])
            what = f"paused ({n} open item{'s' * (n != 1)} back to the pool)" if paused else "resumed"
            return render.note(f"{name.strip()} {what}.", "ok"), self.status(campaign_id, request)

        handler.__name__ = "pause_rater" if paused else "resume_rater"
        return handler

    def plan(self, margin, tie_rate, k, icc, power, request: gr.Request):
        """`python -m pipeline campaign plan --margin M --tie-rate T --k K --icc I --power P`."""
        self.ctx.require_admin(request)
        try:
            p = trust.plan(float(margin or 0), float(tie_rate or 0), int(k or 1), icc=float(icc or 0),
                           power=float(power or 0.8))
        except ValueError as exc:
            raise UserError(f"planner: {exc}") from None
        return report_sections.plan_html(p, int(k or 1), float(margin), float(power or 0.8))

    def status(self, campaign_id, request: gr.Request):
        """A campaign's fill and per-annotator progress (the Campaigns sub-tab)."""
        if not self.ctx.is_admin(request) or not campaign_id:
            return ""
        store = self.ctx.store()
        c = ev.require_campaign(store, int(campaign_id))
        paused = [n for n, r in store.raters(c["id"]).items() if r["status"] == "paused"]
        warn = render.note("Paused raters: " + "; ".join(f"{n} ({store.raters(c['id'])[n]['reason'] or ''})"
                                                         for n in paused), "warn") if paused else ""
        state = "held: identity leaks to resolve" if c["status"] == "review" else c["status"]
        return (render.note(f"Campaign {c['id']} is {state}.", "info") + warn
                + rater_sections.leaks_html(store.identity_hits(c["id"])) + progress_html(store, c["id"]))

    def set_open(self, opened: bool):
        def handler(campaign_id, request: gr.Request):
            """`pipeline campaign open|close C`."""
            self.ctx.require_admin(request)
            if not campaign_id:
                raise UserError("choose a campaign first")
            c = ev.set_status(self.ctx.store(), int(campaign_id), "open" if opened else "closed")
            seen = "annotators see it in the Judge tab" if opened else "annotators no longer see it"
            return render.note(f"Campaign {c['id']} is now {c['status']}: {seen}.", "ok")

        handler.__name__ = "open_campaign" if opened else "close_campaign"
        return handler

    def assign(self, campaign_id, names: str, password: str, request: gr.Request):
        """`pipeline campaign assign C --annotators a,b [--password PW]`."""
        self.ctx.require_admin(request)
        if not campaign_id:
            raise UserError("choose a campaign first")
        return assign_html(ev.assign_annotators(self.ctx.store(), int(campaign_id), names or "", password or None)), ""

    def import_judgments(self, path, fmt: str, campaign: str, llm: bool, judge: str, chatgpt: str, vicuna: str,
                         answers, request: gr.Request):
        """`pipeline import-judgments FILE --campaign C --format F [--llm | --judge J | --chatgpt M --vicuna M]`."""
        user = self.ctx.require_admin(request)
        campaign = str(campaign or "").strip()
        if not path or not campaign:
            raise UserError("choose a judgments file and a campaign (an existing one, or type a new name)")
        from wizardlab.evaluation import external

        store, fmt = self.ctx.store(), fmt or "auto"
        if fmt == "vicuna-review":
            with tempfile.TemporaryDirectory(dir=self.ctx.data_dir.resolve()) as tmp:
                review = vicuna_review_copy(path, answers, Path(tmp))
                result = external.import_vicuna_reviews(store, ev.require_campaign(store, campaign), review,
                                                        (judge or "").strip() or "gpt-4-review")
        elif fmt == "faireval":
            if not (chatgpt or "").strip() or not (vicuna or "").strip():
                raise UserError("FairEval labels need the ChatGPT and the Vicuna-13B output sets' model names")
            result = external.import_faireval(store, ev.require_campaign(store, campaign), path,
                                              chatgpt=chatgpt.strip(), vicuna=vicuna.strip())
        else:
            result = external.import_judgments(store, path, campaign, fmt=fmt, llm=bool(llm),
                                               created_by=user["username"])
        return import_result_html(campaign, result)

    def agreement(self, path, fmt: str, request: gr.Request):
        """`pipeline agreement --judgments FILE --format F`: nothing is stored."""
        self.ctx.require_admin(request)
        if not path:
            raise UserError("choose a judgments file (CSV with item, annotator, label, or a format above)")
        return file_agreement(path, fmt)

    def release(self, campaign_id, minutes, request: gr.Request):
        """`pipeline campaign release C --older-than MIN`."""
        self.ctx.require_admin(request)
        if not campaign_id:
            raise UserError("choose a campaign first")
        minutes = 30.0 if minutes is None or minutes == "" else float(minutes)
        if minutes < 0:
            raise UserError(f"minutes must be 0 or more, got {minutes:g}")
        store = self.ctx.store()
        c = ev.require_campaign(store, int(campaign_id))
        n = store.release_open_assignments(c["id"], minutes * 60)
        note = render.note(f"Released {n} open assignment{'s' * (n != 1)} idle for more than {minutes:g} minutes.",
                           "ok")
        return note, progress_html(store, c["id"])

    def show(self, campaign_id, exclude_flagged: bool = False, request: gr.Request = None):
        self.ctx.require_admin(request)
        if not campaign_id:
            return "", ""
        rep = rp.build_report(self.ctx.store(), int(campaign_id), n_boot=1000,
                              exclude="flagged" if exclude_flagged else None)
        return progress_html(self.ctx.store(), int(campaign_id)), report_html(rep)

    def export(self, campaign_id, exclude_flagged: bool = False, request: gr.Request = None):
        self.ctx.require_admin(request)
        if not campaign_id:
            raise UserError("choose a campaign first")
        rep = rp.build_report(self.ctx.store(), int(campaign_id), n_boot=1000,
                              exclude="flagged" if exclude_flagged else None)
        out = Path(tempfile.mkdtemp(prefix="wl-report-", dir=self.ctx.data_dir.resolve()))
        return gr.File(value=list(export(rep, out)), visible=True)

    def judge(self, campaign_id, mode: str, request: gr.Request):
        user = self.ctx.require_admin(request)
        if not campaign_id:
            raise UserError("choose a campaign first")
        if mode not in JUDGE_MODES.values():
            raise UserError(f"unknown judge mode {mode!r}")
        store = self.ctx.store()
        c = ev.require_campaign(store, int(campaign_id))
        s = self.ctx.settings
        run_id, status = start_judging(store, s, c, created_by=user["username"], log_dir=self.ctx.log_dir, mode=mode)
        return render.note(f"LLM judge run {run_id} ({mode}) {status} ({s.llm_label}).", "ok"), gr.Timer(active=True)

    def poll(self, request: gr.Request):
        if not self.ctx.is_admin(request):
            return gr.skip(), gr.skip(), gr.Timer(active=False)
        store = self.ctx.store()
        jobs.refresh(store)
        live = any(r["status"] in jobs.ACTIVE for r in store.list_runs(limit=50) if r["kind"] in ("generate", "judge"))
        html = jobs_html(store)
        return html, html, gr.Timer(active=live)


# -- layout: one sub-tab per step of the work ---------------------------------------------
@dataclasses.dataclass
class EvalWidgets:
    """Every widget of the Evaluate tab, filled by the sub-tab builders below."""

    # Output sets
    sets: gr.HTML = None
    file: gr.File = None
    tfile: gr.File = None
    model: gr.Textbox = None
    name: gr.Textbox = None
    import_btn: gr.Button = None
    testset: gr.Dropdown = None
    gfile: gr.File = None
    gmodel: gr.Dropdown = None
    gdir: gr.Textbox = None
    gname: gr.Textbox = None
    generate: gr.Button = None
    sets_msg: gr.HTML = None
    jobs: gr.HTML = None
    # Campaigns
    camps: gr.HTML = None
    cname: gr.Textbox = None
    csets: gr.Dropdown = None
    pairs: gr.Radio = None
    k: gr.Number = None
    attention: gr.Number = None
    gold: gr.Number = None
    repeats: gr.Number = None
    threshold: gr.Number = None
    routing: gr.Radio = None
    both_bad: gr.Checkbox = None
    rationale: gr.Checkbox = None
    guidelines: gr.Textbox = None
    create: gr.Button = None
    pmargin: gr.Number = None
    ptie: gr.Number = None
    picc: gr.Number = None
    ppower: gr.Number = None
    plan: gr.Button = None
    plan_out: gr.HTML = None
    camp_msg: gr.HTML = None
    campaign: gr.Dropdown = None
    status: gr.HTML = None
    hit: gr.Number = None
    hit_action: gr.Radio = None
    hit_text: gr.Textbox = None
    resolve: gr.Button = None
    rater_name: gr.Textbox = None
    pause: gr.Button = None
    resume: gr.Button = None
    close: gr.Button = None
    reopen: gr.Button = None
    annotators: gr.Textbox = None
    apassword: gr.Textbox = None
    assign: gr.Button = None
    minutes: gr.Number = None
    release: gr.Button = None
    release_msg: gr.HTML = None
    # Report
    rcampaign: gr.Dropdown = None
    show: gr.Button = None
    export: gr.Button = None
    exclude: gr.Checkbox = None
    files: gr.File = None
    progress: gr.HTML = None
    report: gr.HTML = None
    # LLM judge
    lcampaign: gr.Dropdown = None
    judge_mode: gr.Radio = None
    judge: gr.Button = None
    judge_msg: gr.HTML = None
    judge_jobs: gr.HTML = None
    # Tools
    jfile: gr.File = None
    jformat: gr.Dropdown = None
    jcampaign: gr.Dropdown = None
    jllm: gr.Checkbox = None
    jjudge: gr.Textbox = None
    jchatgpt: gr.Textbox = None
    jvicuna: gr.Textbox = None
    janswers: gr.File = None
    jimport: gr.Button = None
    jresult: gr.HTML = None
    afile: gr.File = None
    aformat: gr.Dropdown = None
    agree: gr.Button = None
    aresult: gr.HTML = None
    timer: gr.Timer = None

    def lists(self) -> list:
        """The outputs of `Evaluate.refresh`, in its order."""
        return [self.sets, self.camps, self.csets, self.campaign, self.rcampaign, self.lcampaign, self.testset,
                self.jobs, self.jcampaign, self.gmodel]


UPLOAD_HEIGHT = 120
SUBTABS = ("Output sets", "Campaigns", "Report", "LLM judge", "Tools")
JUDGE_MODES = {"Pairwise verdict (A, B or tie; a flip between orders is a tie)": "pairwise",
               "Scores 1-10 for both answers (Vicuna's protocol; orders averaged)": "score"}


def build_tab(ctx: AppContext) -> None:
    """Sub-tabs in the order of the work: Output sets -> Campaigns -> Report -> LLM judge -> Tools."""
    w = EvalWidgets()
    with gr.Tabs(elem_id="wl-eval-tabs"):
        with gr.Tab("Output sets", id="eval-sets", elem_id="wl-eval-sets"):
            _sets_tab(w)
        with gr.Tab("Campaigns", id="eval-campaigns", elem_id="wl-eval-campaigns"):
            _campaigns_tab(w)
        with gr.Tab("Report", id="eval-report", elem_id="wl-eval-report"):
            _report_tab(w)
        with gr.Tab("LLM judge", id="eval-judge", elem_id="wl-eval-judge"):
            _judge_tab(w)
        with gr.Tab("Tools", id="eval-tools", elem_id="wl-eval-tools"):
            _import_section(w)
            _agreement_section(w)
    w.timer = gr.Timer(2.0, active=False)
    e = Evaluate(ctx)
    on_show(e.refresh, w.lists())
    _wire_sets(e, w)
    _wire_campaigns(e, w)
    _wire_report(e, w)
    _wire_tools(e, w)


def _sets_tab(w: EvalWidgets) -> None:
    w.sets = gr.HTML(elem_id="wl-sets")
    with gr.Row(equal_height=False):
        with gr.Column(variant="panel"):
            gr.Markdown("**Import outputs**: JSONL/CSV with prompt id, prompt, model, output; or Vicuna answer "
                        "files (`answer_*.jsonl`, several at once) with their `question.jsonl`")
            w.file = gr.File(label="Output file(s)", type="filepath", file_count="multiple", elem_id="wl-out-file",
                             file_types=[".jsonl", ".json", ".csv"], height=UPLOAD_HEIGHT)
            w.tfile = gr.File(label="Test set file the ids refer to (e.g. question.jsonl; optional when the "
                                    "outputs carry the prompt)", type="filepath", elem_id="wl-out-tfile",
                              file_types=[".jsonl", ".json", ".csv"], height=UPLOAD_HEIGHT)
            with gr.Row():
                w.model = gr.Textbox(label="Model (optional)", max_lines=1)
                w.name = gr.Textbox(label="Output set name (optional)", max_lines=1)
            w.import_btn = gr.Button("Import", variant="primary", elem_id="wl-out-import")
        with gr.Column(variant="panel"):
            gr.Markdown("**Generate outputs** with the app's LLM or a trained checkpoint, as a background job")
            w.testset = gr.Dropdown(label="Stored test set", choices=[], allow_custom_value=True)
            w.gfile = gr.File(label="…or a test set file (WizardLM, Vicuna or seed format)", type="filepath",
                              file_types=[".jsonl", ".json", ".csv"], height=UPLOAD_HEIGHT)
            with gr.Row():
                w.gmodel = gr.Dropdown(label="Model", value=APP_LLM, elem_id="wl-gen-model", allow_custom_value=True,
                                       choices=[("The app's LLM (named in the header)", APP_LLM),
                                                ("A local model directory (type it below)", LOCAL_DIR)])
                w.gdir = gr.Textbox(label="Local model directory", max_lines=1, elem_id="wl-gen-dir",
                                    placeholder="/path/to/checkpoint (for 'a local model directory')")
            w.gname = gr.Textbox(label="Output set name (optional)", max_lines=1)
            w.generate = gr.Button("Start generation job", variant="primary")
    w.sets_msg = gr.HTML(elem_id="wl-sets-msg")
    w.jobs = gr.HTML()


def _campaigns_tab(w: EvalWidgets) -> None:
    w.camps = gr.HTML(elem_id="wl-camps")
    with gr.Accordion("New campaign", open=True):
        with gr.Row():
            w.cname = gr.Textbox(label="Name (admins only see it)", max_lines=1)
            w.csets = gr.Dropdown(label="Output sets (2 or more)", choices=[], multiselect=True,
                                  allow_custom_value=True)
        with gr.Row():
            w.pairs = gr.Radio(["one", "all"], value="one", label="Pairs (first two sets, or all pairs)")
            w.k = gr.Number(value=3, precision=0, minimum=1, label="Annotators per item")
            w.attention = gr.Number(value=0, precision=0, minimum=0, label="Attention checks")
            w.both_bad = gr.Checkbox(label="Offer 'both bad'")
            w.rationale = gr.Checkbox(label="Ask for a rationale")
        w.guidelines = gr.Textbox(value=ev.DEFAULT_GUIDELINES, lines=4, label="Guidelines (Markdown)")
        with gr.Accordion("Rater quality: gold and repeated items, routing", open=False, elem_id="wl-quality"):
            with gr.Row(equal_height=True):
                w.gold = gr.Number(value=0.1, minimum=0, maximum=0.5, step=0.05, label="Gold items (share)")
                w.repeats = gr.Number(value=0.1, minimum=0, maximum=0.5, step=0.05, label="Repeated items (share)")
                w.threshold = gr.Number(value=0.7, minimum=0, maximum=1, step=0.05,
                                        label="Pause a rater below this gold accuracy")
                w.routing = gr.Radio([("In order", "order"), ("Widest interval first", "widest")], value="order",
                                     label="Next items")
        _planner(w)
        w.create = gr.Button("Create campaign", variant="primary")
    w.camp_msg = gr.HTML(elem_id="wl-camp-msg")
    gr.Markdown("**Manage a campaign**")
    with gr.Row(equal_height=True):
        w.campaign = gr.Dropdown(label="Campaign", choices=[], allow_custom_value=True, scale=3,
                                 elem_id="wl-manage-campaign")
        w.close = gr.Button("Close", scale=1, elem_id="wl-camp-close")
        w.reopen = gr.Button("Open", scale=1, elem_id="wl-camp-open")
    with gr.Row(equal_height=True):
        w.annotators = gr.Textbox(label="Annotators (user names, comma-separated)", max_lines=1, scale=3,
                                  elem_id="wl-assign-names")
        w.apassword = gr.Textbox(label="Password for new accounts (empty: a random one each)", type="password",
                                 max_lines=1, scale=2)
        w.assign = gr.Button("Create missing accounts", scale=1, elem_id="wl-assign")
    with gr.Row(equal_height=True):
        w.minutes = gr.Number(value=30, minimum=0, label="Idle for more than (minutes)", scale=1,
                              elem_id="wl-release-min")
        w.release = gr.Button("Release idle assignments", scale=1, elem_id="wl-release")
        w.release_msg = gr.HTML(elem_id="wl-release-msg")
    with gr.Row(equal_height=True):
        w.hit = gr.Number(value=None, label="Identity hit", precision=0, minimum=1, scale=1, elem_id="wl-hit")
        w.hit_action = gr.Radio([("Edit the answer", "edit"), ("Drop its items", "drop"), ("Keep (false alarm)", "keep")],
                                value="keep", label="Resolve", scale=2)
        w.hit_text = gr.Textbox(label="Edited answer (for Edit)", lines=2, scale=3)
        w.resolve = gr.Button("Resolve", scale=1, elem_id="wl-resolve")
    with gr.Row(equal_height=True):
        w.rater_name = gr.Textbox(label="Rater (user name)", max_lines=1, scale=3, elem_id="wl-rater-name")
        w.pause = gr.Button("Pause rater", scale=1, elem_id="wl-pause")
        w.resume = gr.Button("Resume rater", scale=1, elem_id="wl-resume")
    w.status = gr.HTML(elem_id="wl-camp-status")


def _planner(w: EvalWidgets) -> None:
    """How many items and judgments the campaign needs (uses the form's annotators per item)."""
    with gr.Accordion("How many judgments are enough?", open=False, elem_id="wl-planner"):
        with gr.Row(equal_height=True):
            w.pmargin = gr.Number(value=0.1, minimum=-1, maximum=1, step=0.01,
                                  label="Expected margin P(first) - P(second)")
            w.ptie = gr.Number(value=0.3, minimum=0, maximum=0.99, step=0.05, label="Expected tie rate")
            w.picc = gr.Number(value=0.2, minimum=0, maximum=1, step=0.05, label="Correlation of votes on one item")
            w.ppower = gr.Number(value=0.8, minimum=0.5, maximum=0.99, step=0.05, label="Power")
            w.plan = gr.Button("Plan", scale=0, elem_id="wl-plan-btn")
        w.plan_out = gr.HTML(elem_id="wl-plan-out")


def _report_tab(w: EvalWidgets) -> None:
    with gr.Row(equal_height=True):
        w.rcampaign = gr.Dropdown(label="Campaign", choices=[], allow_custom_value=True, scale=3,
                                  elem_id="wl-report-campaign")
        w.show = gr.Button("Show report", variant="primary", scale=1)
        w.export = gr.Button("Export JSON + CSV + HTML", scale=1)
        w.exclude = gr.Checkbox(label="Leave flagged raters out", scale=1, elem_id="wl-exclude-flagged")
    w.files = gr.File(label="Exports", interactive=False, file_count="multiple", visible=False)
    w.progress = gr.HTML()
    w.report = gr.HTML(elem_id="wl-report")


def _judge_tab(w: EvalWidgets) -> None:
    gr.Markdown("The LLM judge on a campaign's items, asked in both orders, as a background job with the app's "
                "LLM; its verdicts appear in the Report beside the humans'. Scores (Vicuna's GPT-4 review, as in "
                "the WizardLM paper) also give the capacity ratio chart per skill and category.")
    w.judge_mode = gr.Radio(list(JUDGE_MODES.items()), value="pairwise", label="Judge mode",
                            elem_id="wl-judge-mode")
    with gr.Row(equal_height=True):
        w.lcampaign = gr.Dropdown(label="Campaign", choices=[], allow_custom_value=True, scale=3,
                                  elem_id="wl-judge-job-campaign")
        w.judge = gr.Button("Run LLM judge", variant="primary", scale=1, elem_id="wl-run-judge")
    w.judge_msg = gr.HTML()
    w.judge_jobs = gr.HTML()


def _import_section(w: EvalWidgets) -> None:
    with gr.Group(elem_id="wl-import-judgments"):
        gr.Markdown("**Import judgments** into a campaign, like `python -m pipeline import-judgments`: "
                    "PandaLM JSON, llmfao CSV, open-instruct CSV, a CSV with item, annotator, label; or the "
                    "Vicuna GPT-4 reviews and FairEval labels onto an existing campaign over the Vicuna answers.")
        with gr.Row(equal_height=False):
            w.jfile = gr.File(label="Judgments file", type="filepath", elem_id="wl-jfile",
                              file_types=[".json", ".jsonl", ".csv", ".txt"])
            with gr.Column():
                w.jformat = gr.Dropdown(list(IMPORT_FORMATS), value="auto", label="Format")
                w.jcampaign = gr.Dropdown(label="Campaign (pick one, or type a new name to create it)", choices=[],
                                          allow_custom_value=True, elem_id="wl-import-campaign")
                w.jllm = gr.Checkbox(label="The file holds an LLM judge's verdicts (stored as llm:<annotator>)")
        with gr.Accordion("Vicuna reviews / FairEval options", open=False):
            with gr.Row():
                w.jjudge = gr.Textbox(value="gpt-4-review", label="Judge name (Vicuna reviews)", max_lines=1)
                w.jchatgpt = gr.Textbox(label="ChatGPT model (FairEval)", max_lines=1)
                w.jvicuna = gr.Textbox(label="Vicuna-13B model (FairEval)", max_lines=1)
            w.janswers = gr.File(label="Answer files answer_*.jsonl (Vicuna reviews)", type="filepath",
                                 file_count="multiple", file_types=[".jsonl"])
        w.jimport = gr.Button("Import judgments", variant="primary", elem_id="wl-import-judgments-btn")
        w.jresult = gr.HTML(elem_id="wl-import-result")


def _agreement_section(w: EvalWidgets) -> None:
    with gr.Group(elem_id="wl-file-agreement"):
        gr.Markdown("**Agreement of a file**, like `python -m pipeline agreement`: a CSV with item, annotator, "
                    "label (any labels; `tie` is a tie) or a PandaLM / llmfao / open-instruct file. Nothing is "
                    "stored.")
        with gr.Row(equal_height=True):
            w.afile = gr.File(label="Judgments file", type="filepath", file_types=[".json", ".csv"], scale=3,
                              elem_id="wl-afile")
            w.aformat = gr.Dropdown(["auto", *FORMATS], value="auto", label="Format", scale=1)
            w.agree = gr.Button("Compute agreement", variant="primary", scale=1, elem_id="wl-agree-btn")
        w.aresult = gr.HTML(elem_id="wl-agree-result")


PRIVATE = {"api_visibility": "private"}


def _then_refresh(e: Evaluate, w: EvalWidgets) -> dict:
    return dict(fn=e.refresh, inputs=None, outputs=w.lists(), **PRIVATE)


def _wire_sets(e: Evaluate, w: EvalWidgets) -> None:
    w.import_btn.click(ui_errors(e.import_file), [w.file, w.tfile, w.model, w.name], w.sets_msg,
                       api_name="eval_import").then(**_then_refresh(e, w))
    w.generate.click(ui_errors(e.generate), [w.testset, w.gfile, w.gname, w.gmodel, w.gdir],
                     [w.sets_msg, w.timer], api_name="eval_generate").then(**_then_refresh(e, w))
    w.timer.tick(e.poll, None, [w.jobs, w.judge_jobs, w.timer], **PRIVATE)


def _wire_campaigns(e: Evaluate, w: EvalWidgets) -> None:
    w.create.click(ui_errors(e.create), [w.cname, w.csets, w.pairs, w.k, w.guidelines, w.both_bad, w.rationale,
                                         w.attention, w.gold, w.repeats, w.threshold, w.routing], w.camp_msg,
                   api_name="eval_create_campaign").then(**_then_refresh(e, w))
    w.campaign.change(ui_errors(e.status), [w.campaign], [w.status], **PRIVATE)
    w.close.click(ui_errors(e.set_open(False)), [w.campaign], w.camp_msg,
                  api_name="eval_close_campaign").then(**_then_refresh(e, w))
    w.reopen.click(ui_errors(e.set_open(True)), [w.campaign], w.camp_msg,
                   api_name="eval_open_campaign").then(**_then_refresh(e, w))
    w.assign.click(ui_errors(e.assign), [w.campaign, w.annotators, w.apassword], [w.camp_msg, w.apassword],
                   api_name="eval_assign")
    w.release.click(ui_errors(e.release), [w.campaign, w.minutes], [w.release_msg, w.status],
                    api_name="eval_release")
    w.plan.click(ui_errors(e.plan), [w.pmargin, w.ptie, w.k, w.picc, w.ppower], w.plan_out, api_name="eval_plan")
    w.resolve.click(ui_errors(e.resolve), [w.campaign, w.hit, w.hit_action, w.hit_text], [w.camp_msg, w.status],
                    api_name="eval_resolve_leak").then(**_then_refresh(e, w))
    w.pause.click(ui_errors(e.rater(True)), [w.campaign, w.rater_name], [w.camp_msg, w.status],
                  api_name="eval_pause_rater")
    w.resume.click(ui_errors(e.rater(False)), [w.campaign, w.rater_name], [w.camp_msg, w.status],
                   api_name="eval_resume_rater")


def _wire_report(e: Evaluate, w: EvalWidgets) -> None:
    w.show.click(ui_errors(e.show), [w.rcampaign, w.exclude], [w.progress, w.report], api_name="eval_report")
    w.rcampaign.change(ui_errors(e.show), [w.rcampaign, w.exclude], [w.progress, w.report], **PRIVATE)
    w.exclude.change(ui_errors(e.show), [w.rcampaign, w.exclude], [w.progress, w.report], **PRIVATE)
    w.export.click(ui_errors(e.export), [w.rcampaign, w.exclude], w.files, api_name="eval_export")
    w.judge.click(ui_errors(e.judge), [w.lcampaign, w.judge_mode], [w.judge_msg, w.timer], api_name="eval_llm_judge")


def _wire_tools(e: Evaluate, w: EvalWidgets) -> None:
    w.jimport.click(ui_errors(e.import_judgments), [w.jfile, w.jformat, w.jcampaign, w.jllm, w.jjudge, w.jchatgpt,
                                                    w.jvicuna, w.janswers], w.jresult,
                    api_name="eval_import_judgments").then(**_then_refresh(e, w))
    w.agree.click(ui_errors(e.agreement), [w.afile, w.aformat], w.aresult, api_name="eval_agreement")
