"""Review queues inside the Lineage tab: a curator's queue page, and the admins' task tools.

Queue (admins and curators, `ctx.require_curator`): pick an open review task, then node after
node: the parent instruction, the evolved instruction, its response, the rules' verdict, the
rule that fired and why; never the run's endpoint or model. Keep / Eliminate / Unsure with
keys k / e / n, skip (s) and undo (u), like the Judge page. The assignment on screen lives in
`gr.State` (server side) and is echoed by a hidden token, so a stale repeat click is ignored.

Tasks (admins only, `ctx.require_admin`): create a task over a filter (round, rule, ...,
a seeded sample, k curators per node), list tasks with progress, read the agreement report
(`wizardlab.review.report`) and apply a task as audited overrides (majority or unanimous).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import gradio as gr

from eval_ui import render
from eval_ui.context import AppContext, on_show, parse_id, ui_errors
from wizardlab import curation, review
from wizardlab.errors import UserError

ANY = "any"
TASK_HEADERS = ["Task", "Name", "Run", "Filter", "k", "Nodes", "Verdicts", "Curators", "Status"]
BUTTONS = {"keep": ("Keep  [k]", "wl-rev-keep"), "eliminate": ("Eliminate  [e]", "wl-rev-elim"),
           "unsure": ("Unsure  [n]", "wl-rev-unsure")}
KEYS_JS = """
() => {
  if (window.__wlReviewKeys) return;
  window.__wlReviewKeys = true;
  const map = {"k": "wl-rev-keep", "e": "wl-rev-elim", "n": "wl-rev-unsure", "s": "wl-rev-skip", "u": "wl-rev-undo"};
  document.addEventListener("keydown", (e) => {
    const tag = (e.target && e.target.tagName) || "";
    if (e.ctrlKey || e.metaKey || e.altKey || tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    const id = map[e.key.toLowerCase()];
    const btn = id && document.getElementById(id);
    if (btn && btn.checkVisibility() && !btn.disabled) { e.preventDefault(); btn.click(); }
  });
}
"""


def item_html(item: dict) -> str:
    """The node under review, all text escaped; no model or endpoint names."""
    head = [f'<span class="wl-node-id">node #{item["node_id"]}</span>',
            f'round {item["round"]} · <b>{render.esc(item["operation"])}</b>',
            "rules said " + render.badge(item["status"]), render.chips(item["fail_rules"])]
    parts = [f'<div class="wl-node-head">{" ".join(head)}</div>',
             '<div class="wl-label">Parent instruction</div>', render.text(item["parent_instruction"])]
    if item.get("parent_input"):
        parts += ['<div class="wl-label">Parent input</div>', render.text(item["parent_input"])]
    parts += ['<div class="wl-label">Evolved instruction</div>', render.text(item["instruction"])]
    if item.get("input"):
        parts += ['<div class="wl-label">Input</div>', render.text(item["input"])]
    parts += ['<div class="wl-label">Response</div>', render.text(item["response"], empty="(no response)")]
    if item.get("error"):
        parts.append(render.note(f"Why: {item['error']}", "warn"))
    cls = render.STATUS_CLASS.get(item["status"], "pending")
    node_id = item["node_id"]
    return f'<div class="wl-node wl-node-{cls} wl-review-item" id="wl-rev-node-{node_id}">{"".join(parts)}</div>'


def progress_html(p: dict | None, note: str = "") -> str:
    if not p:
        return render.note(note or "Choose a review task to start.", "info")
    label = f"{p['done']} answered of {p['total']} nodes" + (f" · {p['skipped']} skipped" if p["skipped"] else "")
    return f'<div class="wl-progress">{render.bar(p["done"], p["total"], label)}{note}</div>'


class Queue:
    """The queue page's callbacks: per-session state {task, assignment_id, shown_at, progress}."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def _task(self, state: dict) -> int:
        if not state.get("task"):
            raise UserError("choose a review task first")
        return int(state["task"])

    def _show(self, state: dict, user: dict, note: str = ""):
        """(item html, progress html, state, token) for the curator's next item or the done page."""
        store, tid = self.ctx.store(), self._task(state)
        item = review.next_item(store, tid, user["username"])
        if item is None:
            p = store.review_progress(tid, user["username"])
            done = render.note("Nothing left for you in this task: thank you!", "ok")
            return note or done, progress_html(p), {"task": tid}, ""
        if state.get("assignment_id") != item["assignment_id"]:
            state = {"task": tid, "assignment_id": item["assignment_id"], "shown_at": time.time()}
        return item_html(item), progress_html(item["progress"], note), state, str(item["assignment_id"])

    def tasks(self, request: gr.Request):
        if not self.ctx.can_curate(request):
            return gr.skip()
        return gr.Dropdown(choices=task_choices(self.ctx.store(), "open"))

    def start(self, task_id, request: gr.Request):
        user = self.ctx.require_curator(request)
        if not task_id:
            return render.note("Choose a review task to start.", "info"), progress_html(None), {}, ""
        return self._show({"task": review.task(self.ctx.store(), task_id)["id"]}, user)

    def choose(self, verdict: str):
        def handler(state: dict, token: str, request: gr.Request):
            user = self.ctx.require_curator(request)
            tid = self._task(state)
            if state.get("assignment_id") and str(token) == str(state["assignment_id"]):  # else a stale repeat
                seconds = round(time.time() - state.get("shown_at", time.time()), 2)
                review.answer(self.ctx.store(), tid, user["username"], state["assignment_id"], verdict, seconds)
            return self._show(state, user)

        handler.__name__ = f"review_{verdict}"
        return handler

    def skip(self, state: dict, token: str, request: gr.Request):
        user = self.ctx.require_curator(request)
        self._task(state)
        if state.get("assignment_id") and str(token) == str(state["assignment_id"]):
            review.skip(self.ctx.store(), user["username"], state["assignment_id"])
        return self._show(state, user)

    def undo(self, state: dict, request: gr.Request):
        user = self.ctx.require_curator(request)
        done = review.undo(self.ctx.store(), self._task(state), user["username"])
        return self._show(state, user, "" if done else render.note("Nothing to undo.", "warn"))


def task_choices(store, status: str | None = None) -> list[tuple[str, int]]:
    return [(f"#{t['id']} · {t['name']} · {t['n_items']} nodes, k={t['k']}", t["id"])
            for t in store.list_review_tasks(status)]


def build_queue(ctx: AppContext) -> None:
    q = Queue(ctx)
    gr.Markdown("Review the rules' decisions node by node: would you keep this evolution in the data set? "
                "Your answers are combined with the other curators' when an admin applies the task.")
    with gr.Row(equal_height=True):
        task = gr.Dropdown(label="Review task", choices=[], allow_custom_value=True, scale=1, elem_id="wl-rev-task")
        progress = gr.HTML(progress_html(None), elem_id="wl-rev-progress")
    item = gr.HTML(elem_id="wl-rev-item")
    with gr.Row():
        variants = {"keep": "primary", "eliminate": "primary", "unsure": "secondary"}
        buttons = {v: gr.Button(label, variant=variants[v], elem_id=eid) for v, (label, eid) in BUTTONS.items()}
    with gr.Row():
        skip = gr.Button("Skip  [s]", size="sm", elem_id="wl-rev-skip")
        undo = gr.Button("Undo last  [u]", size="sm", elem_id="wl-rev-undo")
    gr.HTML('<div class="wl-muted">Keys: <span class="wl-kbd">k</span> keep <span class="wl-kbd">e</span> eliminate '
            '<span class="wl-kbd">n</span> unsure <span class="wl-kbd">s</span> skip '
            '<span class="wl-kbd">u</span> undo</div>')
    state = gr.State({})
    token = gr.Textbox(visible=False, elem_id="wl-rev-token")
    out = [item, progress, state, token]
    on_show(q.tasks, [task])
    task.change(ui_errors(q.start), [task], out, api_name="review_start")
    common = {"concurrency_limit": 16, "concurrency_id": "review", "show_progress": "hidden"}
    for verdict, button in buttons.items():
        button.click(ui_errors(q.choose(verdict)), [state, token], out, api_name=f"review_{verdict}", **common)
    skip.click(ui_errors(q.skip), [state, token], out, api_name="review_skip", **common)
    undo.click(ui_errors(q.undo), [state], out, api_name="review_undo", **common)
    root = gr.context.Context.root_block
    if root is not None:
        root.load(None, None, None, js=KEYS_JS)


# -- admins: tasks ---------------------------------------------------------------------------------
def tasks_rows(store) -> list[list]:
    return [[t["id"], t["name"], t["run_id"], curation.Filters.parse(
                **{k: v for k, v in t["filters"].items() if k in curation.Filters.__dataclass_fields__}).describe()
             + (f", sample {t['filters']['sample']}" if t["filters"].get("sample") else ""),
             t["k"], t["n_items"], t["n_verdicts"], t["n_curators"],
             t["status"] + (f" ({t['policy']})" if t["policy"] else "")] for t in store.list_review_tasks()]


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def report_html(rep: dict) -> str:
    """Agreement between curators and per-rule precision, as two small tables."""
    ag = rep["agreement"] or {}
    votes = " · ".join(f"{v} {n}" for v, n in sorted(rep["verdicts"].items())) or "none"
    head = render.note(f"Task #{rep['task']['id']} {rep['task']['name']}: {rep['n_items']} nodes, "
                       f"{rep['n_complete']} with k={rep['task']['k']} verdicts, {rep['n_decided']} decided "
                       f"({rep['policy']}); verdicts: {votes}", "info")
    agree = render.table(["Percent agreement", "Cohen κ (mean of pairs)", "Fleiss κ", "Krippendorff α", "Curators"],
                         [[_pct(ag.get("percent_agreement")), _num(ag.get("cohen_kappa_mean")),
                           _num(ag.get("fleiss_kappa")), _num(ag.get("krippendorff_alpha")),
                           ag.get("n_annotators", 0)]])
    pairs = render.table(["Curator", "Curator", "Shared nodes", "Cohen κ"],
                         [[p["a"], p["b"], p["n"], _num(p["kappa"])] for p in ag.get("cohen_kappa_pairs") or []])
    rules = render.table(
        ["Rule", "Rules said", "Nodes", "Decided", "Humans agree", "Precision", "95% interval", "Overturned"],
        [[r["rule"], r["rules_said"], r["n_items"], r["n_decided"], r["humans_agree"], _pct(r["precision"]),
          f"{_pct(r['ci'][0])} – {_pct(r['ci'][1])}" if r["ci"] else "", _pct(r["overturn_rate"])]
         for r in rep["rules"]])
    return (f'<div id="wl-rev-report">{head}<div class="wl-label">Agreement between curators</div>{agree}{pairs}'
            f'<div class="wl-label">Humans vs. each rule</div>{rules}</div>')


def build_tasks(ctx: AppContext) -> None:
    gr.Markdown("Create a review task over a filter of one run's evolutions; each node goes to k curators. "
                "Apply writes the decided verdicts as audited overrides (once per task).")
    with gr.Row(equal_height=True):
        run = gr.Dropdown(label="Evolution run to review", choices=[], allow_custom_value=True, scale=2,
                          elem_id="wl-rt-run")
        name = gr.Textbox(label="Task name", max_lines=1, scale=2, elem_id="wl-rt-name")
        rnd = gr.Dropdown([ANY] + [str(i) for i in range(1, 11)], value=ANY, label="Only round", scale=1)
        rule = gr.Dropdown([ANY, *curation.RULES], value=ANY, label="Only rule", scale=2, elem_id="wl-rt-rule")
        op = gr.Dropdown([ANY, *curation.OPERATIONS], value=ANY, label="Only operation", scale=2)
        status = gr.Dropdown([ANY, "kept", "eliminated"], value=ANY, label="Only status", scale=1)
    with gr.Row(equal_height=True):
        text = gr.Textbox(label="Only text containing", max_lines=1, scale=3)
        sample = gr.Number(label="Sample size (0: all)", precision=0, scale=1, elem_id="wl-rt-sample")
        k = gr.Number(value=2, label="Curators per node (k)", precision=0, minimum=1, scale=1, elem_id="wl-rt-k")
        seed = gr.Number(value=0, label="Sampling seed", precision=0, scale=1)
        create = gr.Button("Create task", variant="primary", scale=1, elem_id="wl-rt-create")
    table = gr.Dataframe(headers=TASK_HEADERS, interactive=False, wrap=True, elem_id="wl-rt-table")
    with gr.Row(equal_height=True):
        task_id = gr.Textbox(label="Task id", max_lines=1, scale=1, elem_id="wl-rt-id")
        policy = gr.Radio(list(review.POLICIES), value="majority", label="Policy", scale=2, elem_id="wl-rt-policy")
        report = gr.Button("Report", scale=1, elem_id="wl-rt-report")
        count = gr.Button("Count overrides", scale=1, elem_id="wl-rt-count")
        apply = gr.Button("Apply as overrides", variant="stop", scale=1, elem_id="wl-rt-apply")
    with gr.Accordion("Blinding check: judges who also curated an arm's data", open=False):
        with gr.Row(equal_height=True):
            campaign = gr.Textbox(label="Campaign (name or id)", max_lines=1, scale=2, elem_id="wl-rt-campaign")
            arm_runs = gr.Textbox(label="Evolution runs behind its arms (ids, comma-separated)", max_lines=1,
                                  scale=2, elem_id="wl-rt-arm-runs")
            check = gr.Button("Check", scale=1, elem_id="wl-rt-check")
    msg = gr.HTML(elem_id="wl-rt-msg")
    _wire_tasks(ctx, SimpleNamespace(**locals()))


def _wire_tasks(ctx: AppContext, w: SimpleNamespace) -> None:
    from eval_ui.lineage import run_choices

    @ui_errors
    def create(run_id, name, rnd, rule, op, status, text, sample, k, seed, request: gr.Request):
        user = ctx.require_admin(request)
        if not run_id:
            raise UserError("choose a run")
        filters = curation.Filters.parse(text=text, round=rnd, operation=op, status=status, rule=rule)
        t = review.create_task(ctx.store(), int(run_id), name, filters, k=int(k or 0),
                               sample=int(sample) if sample else None, seed=int(seed or 0), user=user["username"])
        return (render.note(f"Review task #{t['id']} {t['name']}: {t['n_items']} nodes, k={t['k']}.", "ok"),
                tasks_rows(ctx.store()), str(t["id"]))

    def listing(request: gr.Request):
        if not ctx.is_admin(request):
            return gr.skip(), gr.skip()
        store = ctx.store()
        runs = run_choices(store)
        return tasks_rows(store), gr.Dropdown(choices=runs, value=runs[0][1] if runs else None)

    @ui_errors
    def show_report(task_id, policy, request: gr.Request):
        ctx.require_admin(request)
        return report_html(review.report(ctx.store(), parse_id(task_id, "task id"), policy))

    def applier(dry_run: bool):
        @ui_errors
        def on_apply(task_id, policy, request: gr.Request):
            user = ctx.require_admin(request)
            s = review.apply(ctx.store(), parse_id(task_id, "task id"), policy, user["username"], dry_run=dry_run)
            verb = "would write" if dry_run else "wrote"
            return (render.note(f"Task #{s['task']} ({policy}): {verb} {s['overrides']} overrides ({s['restore']} "
                                f"restore, {s['eliminate']} eliminate) from {s['decided']} decided of {s['items']} "
                                f"nodes.", "info" if dry_run else "ok"), tasks_rows(ctx.store()))
        return on_apply

    @ui_errors
    def conflicts(campaign, arm_runs, request: gr.Request):
        ctx.require_admin(request)
        runs = [parse_id(r, "evolution run id") for r in str(arm_runs or "").replace(",", " ").split()]
        rows = review.campaign_conflicts(ctx.store(), (campaign or "").strip(), runs)
        if not rows:
            return render.note("No judge of this campaign curated those runs.", "ok")
        return render.note(f"{len(rows)} judge(s) also curated an arm's data: read their votes with care.", "warn") \
            + render.table(["Annotator", "Judgments", "Overrides", "Review verdicts"],
                           [[r["annotator"], r["judgments"], r["overrides"], r["verdicts"]] for r in rows])

    w.check.click(conflicts, [w.campaign, w.arm_runs], w.msg, api_name="review_task_conflicts")
    filt = [w.run, w.name, w.rnd, w.rule, w.op, w.status, w.text, w.sample, w.k, w.seed]
    w.create.click(create, filt, [w.msg, w.table, w.task_id], api_name="review_task_create")
    w.report.click(show_report, [w.task_id, w.policy], w.msg, api_name="review_task_report")
    w.count.click(applier(True), [w.task_id, w.policy], [w.msg, w.table], api_name="review_task_count")
    w.apply.click(applier(False), [w.task_id, w.policy], [w.msg, w.table], api_name="review_task_apply")
    on_show(listing, [w.table, w.run])
