"""Evaluate tab (admins): output sets, campaigns, progress, the report, exports and the LLM judge.

- Output sets: import a JSONL/CSV output file (or a Vicuna answer file with its question
  file), or generate one from a test set with the app's LLM (a `generate` job).
- Campaigns: two or more output sets, one pair or all pairs, k, guidelines, "both bad",
  rationale, attention checks.
- Report: progress per annotator, win / tie / loss bars with 95% intervals, ratings,
  difficulty split, position bias, agreement, annotators with flags, LLM judges; JSON and
  CSV export; start the LLM judge (a `judge` job) on the campaign.
Every callback checks `ctx.require_admin(request)` on the server; nothing with a model
name is filled in at build time (annotators receive the page config too), only by
admin-only callbacks. Library calls: `wizardlab.evaluation` and its report module.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from eval_ui import render
from eval_ui.context import AppContext, on_show, ui_errors
from wizardlab import evaluation as ev
from wizardlab import jobs
from wizardlab.errors import UserError
from wizardlab.evaluation import report as rp

REPO_ROOT = Path(__file__).resolve().parent.parent
ACTIVE = ("pending", "queued", "running")


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
    parts = [pairs_html(rep["pairs"], "Humans: win / tie / loss of the first model (per item, 95% bootstrap CI)")]
    if rep["ratings"]:
        parts.append("<h4>Bradley-Terry ratings (Elo scale, 95% CI)</h4>" + render.table(
            ["model", "rating", "CI", "items"],
            [[r["model"], f"{r['rating']:.0f}", f"{r['ci_low']:.0f}–{r['ci_high']:.0f}", r["n"]] for r in rep["ratings"]]))
    split = [b for b in rep["breakdowns"] if b["by"] in ("difficulty_split", "difficulty_band")]
    if split:
        parts.append("<h4>By difficulty (the paper's ≥ 8 split and bands)</h4>" + render.table(
            ["by", "group", "first", "second", "n", "first wins", "tie", "second wins"],
            [[b["by"], b["group"], b["model_a"], b["model_b"], b["n"], _pct(b["win"]), _pct(b["tie"]), _pct(b["loss"])]
             for b in split]))
    other = [b for b in rep["breakdowns"] if b["by"] in ("skill", "category")]
    if other:
        parts.append("<h4>By skill / category</h4>" + render.table(
            ["by", "group", "first", "second", "n", "first wins", "tie", "second wins"],
            [[b["by"], b["group"], b["model_a"], b["model_b"], b["n"], _pct(b["win"]), _pct(b["tie"]), _pct(b["loss"])]
             for b in other]))
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
    for j in rep["llm_judges"]:
        parts.append(f"<h4>LLM judge {render.esc(j['judge'])} vs humans</h4>" + render.table(
            ["items", "with human majority", "agreement", "without ties", "κ", "per-vote agreement"],
            [[j["n_items"], j["n_with_majority"], _pct(j["majority_agreement"]),
              _pct(j["majority_agreement_without_ties"]), _num(j["majority_kappa"]), _pct(j["vote_agreement"])]])
            + pairs_html(j["pairs"], f"{j['judge']}: its own verdicts"))
    return STYLE + "".join(parts)


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


def export(rep: dict, out_dir: Path) -> tuple[str, str]:
    """report.json and a zip of the CSV tables; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "report.json"
    js.write_text(json.dumps(rep, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    rp.write_csv(rep, out_dir / "csv")
    zipped = shutil.make_archive(str(out_dir / "report_csv"), "zip", out_dir / "csv")
    return str(js), zipped


STYLE = """<style>
.wl-wtl { display: flex; height: 16px; width: 220px; border-radius: 8px; overflow: hidden; background: #e2e8f0; }
.wl-wtl-w { background: #6366f1; } .wl-wtl-t { background: #cbd5e1; } .wl-wtl-l { background: #f97316; }
.wl-wtl-cell { min-width: 230px; }
</style>"""


# -- callbacks ----------------------------------------------------------------------------
class Evaluate:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def refresh(self, request: gr.Request):
        if not self.ctx.is_admin(request):  # annotators load the page too: stay silent
            return (gr.skip(),) * 6
        store = self.ctx.store()
        jobs.refresh(store)
        sets = [(f"{s['id']}: {s['name']}", s["id"]) for s in store.list_output_sets()]
        camps = [(f"{c['id']}: {c['name']}", c["id"]) for c in store.list_campaigns()]
        testsets = [t["testset"] for t in store.testsets()]
        return (sets_table(store), campaigns_table(store), gr.Dropdown(choices=sets), gr.Dropdown(choices=camps),
                gr.Dropdown(choices=testsets), jobs_html(store))

    def import_file(self, path, testset_path, model: str, name: str, request: gr.Request):
        self.ctx.require_admin(request)
        if not path:
            raise UserError("choose an output file to import")
        created = ev.import_outputs(self.ctx.store(), path, testset_file=testset_path or None,
                                    model=model.strip() or None, name=name.strip() or None)
        return render.note("Imported " + ", ".join(f"{s['name']} ({s['n_outputs']} outputs)" for s in created), "ok")

    def generate(self, testset: str, testset_path, name: str, request: gr.Request):
        user = self.ctx.require_admin(request)
        from wizardlab.evaluation.generate import prepare_generation

        store = self.ctx.store()
        run_id = prepare_generation(store, self.ctx.settings, testset=testset or None, testset_file=testset_path or None,
                                    name=name.strip() or None, created_by=user["username"])
        argv = jobs.python_argv("generate", "--db", str(Path(self.ctx.settings.db).resolve()), "--run-id", str(run_id))
        log = self.ctx.data_dir.resolve() / "logs" / f"generate-{run_id}.log"
        status = jobs.launch(store, run_id, argv, log, queue="llm", cwd=str(REPO_ROOT))
        return render.note(f"Generation run {run_id} {status}.", "ok"), gr.Timer(active=True)

    def create(self, name, sets, pairs, k, guidelines, both_bad, rationale, attention, request: gr.Request):
        user = self.ctx.require_admin(request)
        cid = ev.create_campaign(self.ctx.store(), name or "", sets or [], pairs=pairs, k=int(k or 3),
                                 guidelines=guidelines or ev.DEFAULT_GUIDELINES, allow_both_bad=bool(both_bad),
                                 rationale=bool(rationale), attention_checks=int(attention or 0),
                                 created_by=user["username"])
        n = len(self.ctx.store().campaign_items(cid, include_attention=True))
        return render.note(f"Campaign {cid} created with {n} items. Annotators find it in the Judge tab.", "ok")

    def show(self, campaign_id, request: gr.Request):
        self.ctx.require_admin(request)
        if not campaign_id:
            return "", ""
        rep = rp.build_report(self.ctx.store(), int(campaign_id), n_boot=1000)
        return progress_html(self.ctx.store(), int(campaign_id)), report_html(rep)

    def export(self, campaign_id, request: gr.Request):
        self.ctx.require_admin(request)
        if not campaign_id:
            raise UserError("choose a campaign first")
        rep = rp.build_report(self.ctx.store(), int(campaign_id), n_boot=1000)
        out = Path(tempfile.mkdtemp(prefix="wl-report-", dir=self.ctx.data_dir.resolve()))
        return gr.File(value=list(export(rep, out)), visible=True)

    def judge(self, campaign_id, request: gr.Request):
        user = self.ctx.require_admin(request)
        if not campaign_id:
            raise UserError("choose a campaign first")
        store = self.ctx.store()
        c = ev.require_campaign(store, int(campaign_id))
        s = self.ctx.settings
        run_id = store.create_run("judge", {"campaign": c["id"], "base_url": s.base_url, "model": s.model},
                                  name=f"LLM judge on {c['name']}", created_by=user["username"])
        argv = jobs.python_argv("judge", "--db", str(Path(s.db).resolve()), "--campaign", str(c["id"]),
                                *(["--base-url", s.base_url] if s.base_url else []),
                                *(["--model", s.model] if s.model else []))
        log = self.ctx.data_dir.resolve() / "logs" / f"judge-{run_id}.log"
        status = jobs.launch(store, run_id, argv, log, queue="llm", cwd=str(REPO_ROOT))
        return render.note(f"LLM judge run {run_id} {status} ({s.llm_label}).", "ok"), gr.Timer(active=True)

    def poll(self, request: gr.Request):
        if not self.ctx.is_admin(request):
            return gr.skip(), gr.Timer(active=False)
        store = self.ctx.store()
        jobs.refresh(store)
        live = any(r["status"] in ACTIVE for r in store.list_runs(limit=50) if r["kind"] in ("generate", "judge"))
        return jobs_html(store), gr.Timer(active=live)


def build_tab(ctx: AppContext) -> None:
    e = Evaluate(ctx)
    w = {}
    with gr.Accordion("Output sets", open=True):
        w["sets"] = gr.HTML()
        with gr.Row(equal_height=False):
            with gr.Column(variant="panel"):
                gr.Markdown("**Import outputs** (JSONL/CSV: prompt id, prompt, model, output; or a Vicuna answer file)")
                w["file"] = gr.File(label="Output file", type="filepath", file_types=[".jsonl", ".json", ".csv"])
                w["tfile"] = gr.File(label="Test set file the ids refer to (optional)", type="filepath",
                                     file_types=[".jsonl", ".json", ".csv"])
                with gr.Row():
                    w["model"] = gr.Textbox(label="Model (optional)", max_lines=1)
                    w["name"] = gr.Textbox(label="Output set name (optional)", max_lines=1)
                w["import"] = gr.Button("Import", variant="primary")
            with gr.Column(variant="panel"):
                gr.Markdown("**Generate outputs** with the app's LLM (named in the header), as a background job")
                w["testset"] = gr.Dropdown(label="Stored test set", choices=[], allow_custom_value=True)
                w["gfile"] = gr.File(label="…or a test set file (WizardLM, Vicuna or seed format)", type="filepath",
                                     file_types=[".jsonl", ".json", ".csv"])
                w["gname"] = gr.Textbox(label="Output set name (optional)", max_lines=1)
                w["generate"] = gr.Button("Start generation job", variant="primary")
        w["jobs"] = gr.HTML()
    with gr.Accordion("New campaign", open=False):
        with gr.Row():
            w["cname"] = gr.Textbox(label="Name (admins only see it)", max_lines=1)
            w["csets"] = gr.Dropdown(label="Output sets (2 or more)", choices=[], multiselect=True,
                                     allow_custom_value=True)
        with gr.Row():
            w["pairs"] = gr.Radio(["one", "all"], value="one", label="Pairs (first two sets, or all pairs)")
            w["k"] = gr.Number(value=3, precision=0, minimum=1, label="Annotators per item")
            w["attention"] = gr.Number(value=0, precision=0, minimum=0, label="Attention checks")
            w["both_bad"] = gr.Checkbox(label="Offer 'both bad'")
            w["rationale"] = gr.Checkbox(label="Ask for a rationale")
        w["guidelines"] = gr.Textbox(value=ev.DEFAULT_GUIDELINES, lines=6, label="Guidelines (Markdown)")
        w["create"] = gr.Button("Create campaign", variant="primary")
    w["msg"] = gr.HTML()
    gr.Markdown("### Campaigns")
    w["camps"] = gr.HTML()
    with gr.Row(equal_height=True):
        w["campaign"] = gr.Dropdown(label="Campaign", choices=[], allow_custom_value=True, scale=3)
        w["show"] = gr.Button("Show report", variant="primary", scale=1)
        w["export"] = gr.Button("Export JSON + CSV", scale=1)
        w["judge"] = gr.Button("Run LLM judge", scale=1)
    w["files"] = gr.File(label="Exports", interactive=False, file_count="multiple", visible=False)
    w["progress"] = gr.HTML()
    w["report"] = gr.HTML(elem_id="wl-report")
    w["timer"] = gr.Timer(2.0, active=False)
    _wire(e, w)


def _wire(e: Evaluate, w: dict) -> None:
    lists = [w["sets"], w["camps"], w["csets"], w["campaign"], w["testset"], w["jobs"]]
    on_show(e.refresh, lists)
    private = {"api_visibility": "private"}
    w["import"].click(ui_errors(e.import_file), [w["file"], w["tfile"], w["model"], w["name"]], w["msg"],
                      api_name="eval_import").then(e.refresh, None, lists, **private)
    w["generate"].click(ui_errors(e.generate), [w["testset"], w["gfile"], w["gname"]], [w["msg"], w["timer"]],
                        api_name="eval_generate").then(e.refresh, None, lists, **private)
    w["create"].click(ui_errors(e.create), [w["cname"], w["csets"], w["pairs"], w["k"], w["guidelines"],
                                            w["both_bad"], w["rationale"], w["attention"]], w["msg"],
                      api_name="eval_create_campaign").then(e.refresh, None, lists, **private)
    w["show"].click(ui_errors(e.show), [w["campaign"]], [w["progress"], w["report"]],
                    api_name="eval_report")
    w["campaign"].change(ui_errors(e.show), [w["campaign"]], [w["progress"], w["report"]], **private)
    w["export"].click(ui_errors(e.export), [w["campaign"]], w["files"], api_name="eval_export")
    w["judge"].click(ui_errors(e.judge), [w["campaign"]], [w["msg"], w["timer"]], api_name="eval_llm_judge")
    w["timer"].tick(e.poll, None, [w["jobs"], w["timer"]], **private)
