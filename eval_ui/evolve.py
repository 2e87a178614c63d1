"""Evolve tab: start an evolution batch as a background job, watch it live, cancel, resume.

Start = `wizardlab.evol.run.start_batch` (validates and imports the seeds, or finds the same
run, and launches the job `python -m pipeline evolve --run-id N`). The job runs in
its own process session with its log in a file, so it keeps going with no browser open;
the page polls the run row (`gr.Timer`) and re-attaches after a reload (newest running
run first). Numbers come from the run's `progress` JSON and the nodes in the store.

Generation settings (temperature, top-p, max tokens for every call, or per stage as on the
command line: `equal:temperature=0`) and the rules' mode go into the run config. Nodes whose
LLM call failed after all retries are shown as retryable, with "Retry failed calls" (run the
job again) and "Give up on failed calls" (they become malformed; the next round can start).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from types import SimpleNamespace

import gradio as gr

from eval_ui import render
from eval_ui.context import AppContext, at_page_load, on_show, ui_errors
from wizardlab import jobs
from wizardlab.errors import UserError
from wizardlab.evol import run as evol_run
from wizardlab.evol.rules import LENIENT, PAPER
from wizardlab.llm import params

DEMO = "Built-in demo seeds (24)"
UPLOAD = "Upload a seed file"
RUN_HEADERS = ["Run", "Status", "Seeds", "Rounds", "Model", "Progress", "Started by", "Created (UTC)"]


def demo_seeds_path() -> str:
    return str(importlib.resources.files("wizardlab") / "data" / "demo_seeds.jsonl")


@dataclasses.dataclass(frozen=True)
class BatchForm:
    """The Start form, parsed and checked once."""

    seeds_path: str
    rounds: int
    concurrency: int
    base_url: str | None
    model: str | None
    seed: int
    limit: int | None
    sampling: dict = dataclasses.field(default_factory=dict)
    rules: str = PAPER

    @classmethod
    def parse(cls, source, upload, rounds, concurrency, base_url, model, seed, limit, temperature=None, top_p=None,
              max_tokens=None, per_stage="", rules=PAPER) -> "BatchForm":
        if source == UPLOAD:
            if not upload:
                raise UserError("choose a seed file to upload, or use the built-in demo seeds")
            path = upload if isinstance(upload, str) else getattr(upload, "name", None) or str(upload)
        else:
            path = demo_seeds_path()
        nums = {}
        for name, value, low in (("rounds", rounds, 1), ("concurrency", concurrency, 1), ("random seed", seed, 0)):
            if value is None or int(value) != value or value < low:
                raise UserError(f"{name} must be a whole number of at least {low}")
            nums[name] = int(value)
        if limit not in (None, 0) and (int(limit) != limit or limit < 0):
            raise UserError("limit must be a whole number (0 = all seeds)")
        base_url, model = " ".join((base_url or "").split()) or None, (model or "").strip() or None
        if base_url:  # one endpoint per line (a pool); each URL[,model=NAME][,weight=W]
            from wizardlab.llm.pool import parse_endpoints

            parse_endpoints(base_url, model or "-")  # a bad entry fails here, naming it
        return cls(path, nums["rounds"], nums["concurrency"], base_url, model, nums["random seed"],
                   int(limit) if limit else None, parse_sampling(temperature, top_p, max_tokens, per_stage),
                   rules if rules in (PAPER, LENIENT) else PAPER)


def parse_sampling(temperature, top_p, max_tokens, per_stage: str) -> dict:
    """The form's generation settings as `{stage: {key: value}}` (empty fields = the defaults)."""
    args = dataclasses.make_dataclass("Args", ["temperature", "top_p", "max_tokens", "sampling"])(
        temperature, top_p, int(max_tokens) if max_tokens else None,
        [item.strip() for item in (per_stage or "").replace("\n", ",").split(",") if item.strip()])
    return params.from_arguments(args, params.EVOLVE_STAGES)


def start_batch(ctx: AppContext, form: BatchForm, user: str) -> tuple[int, str]:
    """Create (or find) the run and start its job; returns (run id, what happened)."""
    settings = dataclasses.replace(ctx.settings, base_url=form.base_url, model=form.model,
                                   concurrency=form.concurrency)
    return evol_run.start_batch(ctx.store(), settings, form.seeds_path, rounds=form.rounds, seed=form.seed,
                                limit=form.limit, created_by=user, log_dir=ctx.log_dir, sampling=form.sampling,
                                rules=form.rules)


def run_choices(store) -> list[tuple[str, int]]:
    return [(f"#{r['id']} · {r.get('name') or ''} · by {r.get('created_by') or '-'} · {render.when(r['created_at'])}",
             r["id"]) for r in store.list_runs("evolve")]


def default_run(store) -> int | None:
    """The newest running run, else the newest run."""
    runs = store.list_runs("evolve")
    active = [r for r in runs if r["status"] in jobs.ACTIVE]
    return (active or runs or [{"id": None}])[0]["id"]


def runs_rows(store) -> list[list]:
    rows = []
    for r in store.list_runs("evolve"):
        c = r["config"]
        rows.append([r["id"], r["status"], c.get("n_seeds", ""), c.get("rounds", ""),
                     render.short(c.get("llm") or c.get("model") or "embedded", 40), jobs.progress_line(r),
                     r.get("created_by") or "", render.when(r["created_at"])])
    return rows


def progress_html(store, run_id: int | None) -> str:
    if not run_id:
        return render.note("No batch yet. Choose seeds and press Start.", "info")
    run = store.get_run(int(run_id))
    if run is None:
        return render.note(f"Run {run_id} does not exist.", "error")
    p, c = run["progress"], run["config"]
    parts = [f'<div class="wl-run-head">{render.badge(run["status"])} <b>Run {run["id"]}</b> · '
             f'{render.esc(c.get("n_seeds", "?"))} seeds × {render.esc(c.get("rounds", "?"))} rounds · '
             f'{render.esc(c.get("llm") or c.get("model") or "")}</div>']
    if c.get("sampling_used"):
        used = " · ".join(f"{stage} T={v['temperature']:g} top-p={v['top_p'] if v['top_p'] is not None else '-'} "
                          f"max {v['max_tokens']}" for stage, v in c["sampling_used"].items())
        parts.append(f'<div class="wl-run-settings">rules: {render.esc(c.get("rules") or "paper")} · '
                     f'{render.esc(used)}</div>')
    if p.get("total"):
        label = (f"round {p.get('round')}/{p.get('rounds')}" + (f" + {p['seed_answers']} seed answers"
                                                                if p.get("seed_answers") else "")
                 if p.get("phase") == "round" else p.get("phase", ""))
        parts.append(render.bar(p.get("done", 0), p["total"], f"{label}: {p.get('done', 0)}/{p['total']}"))
    parts.append(_counters(p))
    parts.append(_endpoints(p))
    parts.append(_failed_calls(store, run))
    parts.append(_round_table(store, run["id"]))
    if p.get("by_rule"):
        parts.append("<h4>Eliminated by rule</h4>" + render.table(
            ["Rule", "Nodes"], sorted(p["by_rule"].items(), key=lambda kv: -kv[1])))
    if run["status"] == "failed" and run.get("error"):
        parts.append(render.note("Failed: " + run["error"].splitlines()[0], "error"))
    return "".join(parts)


def _failed_calls(store, run: dict) -> str:
    """The nodes left retryable by failed calls: how many, and the newest errors."""
    n = store.count_failed_calls(run["id"])
    if not n:
        return ""
    rows = [[f["id"], f["round"], f["operation"] or "seed", f["attempts"], render.short(f["last_error"] or "", 90)]
            for f in store.failed_calls(run["id"], limit=8)]
    head = render.note(f"{n} node(s) have LLM calls that failed after all retries. They are not eliminated: "
                       f"press Retry failed calls when the endpoint is back, or Give up on them "
                       f"(they become malformed and the next round can start).", "warn")
    return ('<div id="wl-failed-calls"><h4>Failed calls (retryable)</h4>' + head
            + render.table(["Node", "Round", "Operation", "Attempts", "Last error"], rows) + "</div>")


def _endpoints(p: dict) -> str:
    """A pool's endpoints: calls, errors, mean latency and whether each is backing off."""
    if not p.get("endpoints"):
        return ""
    return "<h4>Endpoints</h4>" + render.table(
        ["Endpoint", "Model", "Weight", "Calls", "Errors", "Mean latency", "State"],
        [[e["base_url"], e["model"], f"{e['weight']:g}", e["calls"], e["errors"], f"{e['mean_latency_ms']:.0f} ms",
          "backing off" if e["down"] else "up"] for e in p["endpoints"]])


def _counters(p: dict) -> str:
    items = [("Kept", p.get("kept", 0)), ("Eliminated", p.get("eliminated", 0)), ("LLM calls", p.get("calls", 0)),
             ("Cache hits", p.get("cache_hits", 0)),
             ("Tokens in / out", f"{p.get('prompt_tokens', 0):,} / {p.get('completion_tokens', 0):,}"),
             ("Errors", p.get("errors", 0)), ("Retries", p.get("retries", 0)),
             ("Elapsed", render.duration(p.get("elapsed_s"))), ("ETA", render.duration(p.get("eta_s")))]
    cells = "".join(f'<div class="wl-stat"><div class="wl-stat-v">{render.esc(v)}</div>'
                    f'<div class="wl-stat-k">{render.esc(k)}</div></div>' for k, v in items)
    return f'<div class="wl-stats">{cells}</div>'


def _round_table(store, run_id: int) -> str:
    rows = [[f"{r['round']}" if r["round"] else "0 (seeds)", r["total"], r["seed"] + r["kept"], r["eliminated"],
             r["pending"]] for r in store.counts_by_round(run_id)]
    if not rows:
        return ""
    return "<h4>Per round (effective status)</h4>" + render.table(
        ["Round", "Nodes", "In the data set", "Eliminated", "Pending"], rows)


def build_tab(ctx: AppContext) -> None:
    with gr.Row():
        with gr.Column(scale=2, variant="panel", min_width=320):
            gr.Markdown("### New batch")
            source = gr.Radio([DEMO, UPLOAD], value=DEMO, label="Seeds", elem_id="wl-seed-source")
            upload = gr.File(label="Seed file (JSON, JSONL, CSV or Parquet; Alpaca, plain or Self-Instruct fields)",
                             file_types=[".json", ".jsonl", ".csv", ".parquet"], visible=False, type="filepath",
                             elem_id="wl-upload")
            with gr.Row():
                rounds = gr.Number(4, label="Rounds", precision=0, minimum=1, maximum=20, elem_id="wl-rounds")
                concurrency = gr.Number(ctx.settings.concurrency, label="Concurrent calls", precision=0, minimum=1)
            with gr.Row():
                seed = gr.Number(0, label="Random seed", precision=0, minimum=0)
                limit = gr.Number(0, label="Use first N seeds (0 = all)", precision=0, minimum=0,
                                  elem_id="wl-limit")
            with gr.Accordion("LLM endpoint", open=not ctx.settings.uses_embedded_llm):
                # filled on load for admins only: the page config reaches annotators too (blinding)
                base_url = gr.Textbox("", label="Base URL (OpenAI-compatible; one per line for a pool)",
                                      placeholder="empty = embedded model; a pool: one URL[,model=NAME][,weight=W]"
                                      " per line", lines=1, max_lines=6, elem_id="wl-base-url")
                model = gr.Textbox("", label="Model", max_lines=1, elem_id="wl-model",
                                   placeholder="model name at the endpoint")
            with gr.Accordion("Generation settings and rules", open=False):
                gr.Markdown("Empty = the defaults: for an endpoint the official WizardLM code's "
                            "(temperature 1, top-p 0.95, 2048 tokens); the embedded model keeps short budgets.")
                with gr.Row():
                    temperature = gr.Number(None, label="Temperature", minimum=0, maximum=2, elem_id="wl-temperature")
                    top_p = gr.Number(None, label="Top-p", minimum=0, maximum=1, elem_id="wl-top-p")
                    max_tokens = gr.Number(None, label="Max tokens", precision=0, minimum=1, elem_id="wl-max-tokens")
                per_stage = gr.Textbox("", label="Per stage (evolve, respond, equal), e.g. equal:temperature=0",
                                       max_lines=2, elem_id="wl-per-stage")
                rules = gr.Radio([PAPER, LENIENT], value=PAPER, label="Elimination rules (paper = as the paper words "
                                 "them; lenient = regex word count, leading answer label stripped)",
                                 elem_id="wl-rules")
            start = gr.Button("Start batch", variant="primary", elem_id="wl-start")
            message = gr.HTML(elem_id="wl-evolve-msg")
        with gr.Column(scale=3):
            gr.Markdown("### Batches")
            run = gr.Dropdown(label="Batch", choices=[], allow_custom_value=True, elem_id="wl-run")
            with gr.Row():
                cancel = gr.Button("Cancel", variant="stop", size="md", scale=0, min_width=120, elem_id="wl-cancel")
                resume = gr.Button("Resume", size="md", scale=0, min_width=120, elem_id="wl-resume")
                retry = gr.Button("Retry failed calls", size="md", scale=0, min_width=160, elem_id="wl-retry-failed")
                give_up = gr.Button("Give up on failed calls", size="md", scale=0, min_width=180,
                                    elem_id="wl-give-up-failed")
            progress = gr.HTML(render.note("Loading…"), elem_id="wl-progress")
            with gr.Accordion("Job log", open=False):
                log = gr.Textbox(label="Last lines", lines=8, max_lines=16, interactive=False, autoscroll=True)
    gr.Markdown("### All batches")
    table = gr.Dataframe(headers=RUN_HEADERS, interactive=False, wrap=True, elem_id="wl-runs")
    timer = gr.Timer(2.0, active=False)
    _wire(ctx, SimpleNamespace(**locals()))


def _wire(ctx: AppContext, w: SimpleNamespace) -> None:
    """Connect the components built by `build_tab` (attributes of `w`) to their callbacks."""
    show = _watcher(ctx)
    then_show = dict(fn=show, inputs=w.run, outputs=[w.progress, w.table, w.log, w.timer],
                     api_visibility="private")
    _wire_actions(ctx, w, then_show)
    w.run.change(show, w.run, then_show["outputs"], api_name="evolve_progress")
    w.timer.tick(show, w.run, then_show["outputs"], api_visibility="private", show_progress="hidden")

    def attach(request: gr.Request):
        """On page load or tab select: choose the newest running batch (polling starts on change)."""
        if not ctx.is_admin(request):
            return gr.skip()
        store = ctx.store()
        jobs.refresh(store)
        return gr.Dropdown(choices=run_choices(store), value=default_run(store))

    on_show(attach, [w.run])

    def endpoint_defaults(request: gr.Request):
        if not ctx.is_admin(request):
            return gr.skip(), gr.skip()
        return "\n".join((ctx.settings.base_url or "").split()), ctx.settings.model or ""

    at_page_load(endpoint_defaults, [w.base_url, w.model])


def _watcher(ctx: AppContext):
    def show(run_id, request: gr.Request):
        """Progress, runs table and log of one run; the timer polls only while it is live."""
        if not ctx.is_admin(request):  # annotators never see this tab: stay silent, stop polling
            return gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
        store = ctx.store()
        run = store.get_run(int(run_id)) if run_id else None
        live = bool(run and run["status"] in jobs.ACTIVE)
        return (progress_html(store, run_id), runs_rows(store),
                jobs.log_tail(run.get("log_path"), 30) if run else "", gr.Timer(active=live))

    return show


def _wire_actions(ctx: AppContext, w: SimpleNamespace, then_show: dict) -> None:
    @ui_errors
    def on_start(source, upload, rounds, concurrency, base_url, model, seed, limit, temperature, top_p, max_tokens,
                 per_stage, rules, request: gr.Request):
        user = ctx.require_admin(request)
        form = BatchForm.parse(source, upload, rounds, concurrency, base_url, model, seed, limit, temperature, top_p,
                               max_tokens, per_stage, rules)
        run_id, text = start_batch(ctx, form, user["username"])
        return render.note(text, "ok"), gr.Dropdown(choices=run_choices(ctx.store()), value=run_id)

    @ui_errors
    def on_cancel(run_id, request: gr.Request):
        ctx.require_admin(request)
        if not run_id:
            raise UserError("choose a batch first")
        return render.note(f"Run {run_id}: {jobs.cancel(ctx.store(), int(run_id))}.", "ok")

    def resume(run_id, request: gr.Request, give_up: bool):
        user = ctx.require_admin(request)
        store = ctx.store()
        jobs.refresh(store)
        run = store.get_run(int(run_id)) if run_id else None
        if run is None:
            raise UserError("choose a batch first")
        text = f"Resumed run {run_id}."
        if give_up:
            if jobs.is_live(run):
                raise UserError(f"run {run_id} is {run['status']}; cancel it before giving up on failed calls")
            n = evol_run.give_up_failed(store, int(run_id), user["username"])
            text = f"Gave up on {n} node(s) with failed calls (now malformed); resumed run {run_id}."
        evol_run.launch_job(store, int(run_id), ctx.log_dir)
        return render.note(text, "ok"), gr.Dropdown(choices=run_choices(store), value=run_id)

    @ui_errors
    def on_resume(run_id, request: gr.Request):
        return resume(run_id, request, give_up=False)

    @ui_errors
    def on_give_up(run_id, request: gr.Request):
        return resume(run_id, request, give_up=True)

    w.source.change(lambda s: gr.File(visible=s == UPLOAD), w.source, w.upload, api_visibility="private")
    inputs = [w.source, w.upload, w.rounds, w.concurrency, w.base_url, w.model, w.seed, w.limit, w.temperature,
              w.top_p, w.max_tokens, w.per_stage, w.rules]
    w.start.click(on_start, inputs, [w.message, w.run], api_name="evolve_start").then(**then_show)
    w.cancel.click(on_cancel, w.run, w.message, api_name="evolve_cancel").then(**then_show)
    w.resume.click(on_resume, w.run, [w.message, w.run], api_name="evolve_resume").then(**then_show)
    w.retry.click(on_resume, w.run, [w.message, w.run], api_name="evolve_retry_failed").then(**then_show)
    w.give_up.click(on_give_up, w.run, [w.message, w.run], api_name="evolve_give_up_failed").then(**then_show)
