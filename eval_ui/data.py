"""Data tab: how a run's data changed: counts, elimination rates, length, difficulty, diversity; exports.

Numbers come from `wizardlab.analysis` (SQL in `wizardlab.store.analysis`). Difficulty
scoring runs as a background job (`python -m pipeline score`, a `score` runs row polled by a
timer, re-attached after a reload). The diversity map is built in the server when it is
small (IN_PROCESS_MAX points, IN_PROCESS_EMBED_MAX texts to embed) and as an `embed` job
beyond; either way it is saved as JSON under the data dir and shown again on the next
visit, drawn from a seeded sample of at most DISPLAY_MAX points.
Every callback checks the role on the server: curators may look (`ctx.require_curator`),
only admins score, build maps, import reference sets or export (`ctx.require_admin`);
those controls are hidden for curators (`_read_only_for_curators`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from eval_ui import render
from eval_ui.context import AppContext, on_show, popup_info, ui_errors
from wizardlab import jobs
from wizardlab.analysis import difficulty, diversity, tables
from wizardlab.errors import UserError

DISPLAY_MAX = 5_000
NO_REFERENCE = "(none)"
FORMATS = {"jsonl": "Lineage JSONL (every node)", "alpaca": "Alpaca JSON", "sharegpt": "ShareGPT JSON",
           "hf": "Hugging Face dataset (zip)"}
DIFFICULTY_ORDER = [str(i) for i in range(1, 11)]
# typed, so an empty chart keeps numeric axes (an object column would make the plot's axes nominal)
EMPTY_MAP = pd.DataFrame({"x": pd.Series(dtype=float), "y": pd.Series(dtype=float), "color": pd.Series(dtype=str),
                          "text": pd.Series(dtype=str)})
STATUS_COLORS = {"seed": "#6C8EBF", "kept": "#54A24B", "eliminated": "#E45756", "pending": "#BAB0AC"}


# -- what the tab shows (plain functions of the store, testable without a browser) -----------
def run_choices(store) -> list[tuple[str, int]]:
    return [(f"#{r['id']} · {r['status']} · {r['nodes']} nodes · {r.get('name') or ''}", r["id"])
            for r in store.evolve_runs()]


def summary_html(stats: dict) -> str:
    rounds, diff = stats["rounds"], stats["diff_summary"]
    mean = diff.get("mean_data")
    items = [("Nodes", int(rounds["total"].sum())), ("Rounds", max(0, len(rounds) - 1)),
             ("Seeds", int(rounds["seed"].sum())), ("Kept evolutions", int(rounds["kept"].sum())),
             ("Eliminated", int(rounds["eliminated"].sum())), ("Scored", diff.get("scored") or 0),
             ("Mean difficulty (data set)", "-" if mean is None else f"{mean:.2f}")]
    cells = "".join(f'<div class="wl-stat"><div class="wl-stat-v">{render.esc(v)}</div>'
                    f'<div class="wl-stat-k">{render.esc(k)}</div></div>' for k, v in items)
    return f'<div class="wl-stats">{cells}</div>'


def count_views(stats: dict) -> dict:
    """Tables and long-form frames for the bar charts of the Counts section."""
    rounds, ops, rules, lengths = stats["rounds"], stats["ops"], stats["rules"], stats["lengths"]
    status_long = rounds.melt(id_vars="round", value_vars=["seed", "kept", "eliminated", "pending"],
                              var_name="status", value_name="nodes")
    status_long = status_long[status_long["nodes"] > 0].assign(round=lambda f: f["round"].map(_round_label))
    ops_long = ops.melt(id_vars="operation", value_vars=["kept", "eliminated"], var_name="status", value_name="nodes")
    return {"rounds": rounds, "ops": ops, "rules": rules, "lengths": lengths, "round_plot": status_long,
            "op_plot": ops_long, "rule_plot": rules.assign(rate_pct=rules["rate"] * 100),
            "length_plot": lengths.assign(round=lengths["round"].map(_round_label))}


def _round_label(r) -> str:
    return f"round {int(r)}"


def difficulty_hist(stats: dict) -> pd.DataFrame:
    frame = stats["diff_hist"]
    return frame.assign(difficulty=frame["difficulty"].astype(str), n=frame["n"].astype(int))


def score_job(store, run_id: int) -> dict | None:
    """The newest difficulty job of this run."""
    return difficulty.latest_job(store, run_id)


def job_html(job: dict | None, what: str) -> str:
    if job is None:
        return render.note(f"No {what} job yet for this run.", "info")
    p = job["progress"]
    head = f'<div class="wl-run-head">{render.badge(job["status"])} <b>{render.esc(what)} job {job["id"]}</b></div>'
    parts = [head]
    if p.get("total"):
        parts.append(render.bar(p.get("done", 0), p["total"], f"{p.get('phase', '')}: {p.get('done', 0)}/{p['total']}"))
    if p.get("phase") == "done" and not p.get("total"):
        parts.append(render.esc("Nothing was left to score: every node of this scope already had a score."))
    elif "scored" in p:
        parts.append(render.esc(f"scored {p['scored']} · unparsable {p['unparsable']} · failed {p['failed']} · "
                                f"paid calls {p['calls']} · cache hits {p['cache_hits']} · elapsed "
                                f"{render.duration(p.get('elapsed_s'))} · ETA {render.duration(p.get('eta_s'))}"))
    if job["status"] == "failed" and job.get("error"):
        parts.append(render.note("Failed: " + job["error"].splitlines()[0], "error"))
    return "".join(parts)


def scored_html(stats: dict) -> str:
    d = stats["diff_summary"]
    return render.note(f"In the store: {d.get('scored') or 0} scored, {d.get('unparsable') or 0} unparsable "
                       f"(raw answer kept), {d.get('unscored') or 0} not scored yet (finished nodes).", "info")


def map_path(ctx: AppContext, run_id: int) -> Path:
    return ctx.data_dir / "maps" / f"run{int(run_id)}.json"


def map_views(dmap: diversity.DiversityMap | None, color_by: str) -> tuple:
    """(scatter plot update, caption, dispersion table). The plot gets a neutral title here;
    `map_title` then sets the final one: Gradio 6 rebuilds the chart on a prop change but
    with the data it had before, and on new data alone it keeps the old colour domain
    (hiding points of unknown colours); the second update rebuilds with the new data."""
    if dmap is None:
        return gr.ScatterPlot(value=EMPTY_MAP.copy(), title="Diversity map (not built yet)"), render.note(
            "No map yet: press Build diversity map.", "info"), pd.DataFrame()
    frame, sampled = diversity.display_points(dmap.points, color_by, max_points=DISPLAY_MAX)
    e = dmap.embed
    caption = (f"{len(dmap.points)} points, {e.texts} distinct texts ({e.embedded} embedded now, {e.cached} from "
               f"the cache) · {dmap.method} · "
               f"embedding {dmap.seconds.get('embed')} s, projection {dmap.seconds.get('project')} s")
    if sampled:
        caption += f" · drawing a seeded sample of {len(frame)} points"
    table = dmap.dispersion.rename(columns={"mean_cosine_distance": "mean cosine distance"})
    plot = gr.ScatterPlot(value=frame[["x", "y", "color", "text"]], title="Diversity map", color_title=" ")
    return plot, render.note(caption, "info"), table


def map_title(color_by: str):
    return gr.ScatterPlot(title=f"Diversity map · colour: {color_by}", color_title=color_by)


# -- actions -----------------------------------------------------------------------------------
def launch_score(ctx: AppContext, run_id: int, include_eliminated: bool, user: str) -> str:
    _, status = difficulty.launch_scoring(ctx.store(), ctx.settings, run_id, include_eliminated=include_eliminated,
                                          created_by=user, log_dir=ctx.log_dir)
    return status


def build_or_launch_map(ctx: AppContext, run_id: int, reference: str | None, data_only: bool, user: str,
                        progress=None) -> diversity.DiversityMap | None:
    """Build the map here (small runs) or start an `embed` job (big ones; returns None)."""
    return diversity.build_or_launch_map(ctx.store(), run_id, out=map_path(ctx, run_id), reference=reference,
                                         data_only=data_only, created_by=user, log_dir=ctx.log_dir,
                                         progress=progress)


def export_selection(sample, seed, stratify: bool, shuffle: bool, drop_truncated: bool):
    """The export form's sampling options as a `wizardlab.export.Selection` (0 or empty = all)."""
    from wizardlab.export import Selection

    if sample not in (None, 0, "") and (int(sample) != sample or sample < 0):
        raise UserError("sample must be a whole number (0 = the whole training set)")
    if seed in (None, "") or int(seed) != seed:
        raise UserError("seed must be a whole number")
    return Selection(sample=int(sample) if sample else None, seed=int(seed), stratify="round" if stratify else None,
                     shuffle=bool(shuffle), drop_truncated=bool(drop_truncated))


def export_file(ctx: AppContext, run_id: int, fmt: str, selection=None) -> list[str]:
    """The export's file (a zip for hf); with a selection also the chosen ids (`.selection.json`)."""
    from wizardlab.export import export_dataset, selection_path

    out_dir = Path(tempfile.mkdtemp(prefix="wizardlab-export-"))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name = f"run{run_id}-{fmt}-{stamp}"
    ext = {"hf": "", "jsonl": ".jsonl"}.get(fmt, ".json")
    path = export_dataset(ctx.store(), run_id, out_dir / f"{name}{ext}", fmt, selection)
    if fmt == "hf":
        path = shutil.make_archive(str(out_dir / name), "zip", root_dir=path)
    chosen = selection_path(out_dir / f"{name}{ext}")
    return [str(path), str(chosen)] if chosen.exists() else [str(path)]


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- layout ---------------------------------------------------------------------------------------
def build_tab(ctx: AppContext) -> None:
    w: dict = {}
    with gr.Row():
        # choices arrive on page load; custom values are allowed so API callers can name a run,
        # and every callback checks the run itself (_run_id)
        w["run"] = gr.Dropdown(label="Evolution run", choices=[], scale=5, allow_custom_value=True,
                               elem_id="wl-data-run")
        w["refresh"] = gr.Button("Refresh", scale=0, min_width=110, size="sm", elem_id="wl-data-refresh")
    w["summary"] = gr.HTML(render.note("Loading…"), elem_id="wl-data-summary")
    with gr.Tabs():
        with gr.Tab("Counts"):
            _counts_section(w)
        with gr.Tab("Difficulty"):
            _difficulty_section(w)
        with gr.Tab("Diversity"):
            _diversity_section(w)
        with gr.Tab("Export") as w["export_tab"]:
            _export_section(w)
    w["timer"] = gr.Timer(2.0, active=False)
    _wire(ctx, w)


def _counts_section(w: dict) -> None:
    with gr.Row():
        w["round_plot"] = gr.BarPlot(x="round", y="nodes", color="status", title="Nodes per round (effective status)",
                                     color_map=STATUS_COLORS, y_lim=[0, None], height=260, elem_id="wl-data-round-plot")
        w["op_plot"] = gr.BarPlot(x="operation", y="nodes", color="status", title="Evolutions per operation",
                                  color_map=STATUS_COLORS, y_lim=[0, None], height=260, x_label_angle=-30)
    with gr.Row():
        w["rule_plot"] = gr.BarPlot(x="rule", y="rate_pct", title="Elimination rate per rule (% of evolutions)",
                                    y_title="% of evolutions", y_lim=[0, None], height=260, x_label_angle=-20)
        w["length_plot"] = gr.BarPlot(x="round", y="mean_words", title="Mean instruction length (words)",
                                      y_title="words", y_lim=[0, None], height=260)
    with gr.Accordion("Tables", open=False):
        w["rounds"] = gr.Dataframe(label="Per round", interactive=False, wrap=True)
        w["ops"] = gr.Dataframe(label="Per operation (elimination rate: effective; rules: the rules' verdict)",
                                interactive=False, wrap=True)
        w["rules"] = gr.Dataframe(label="Per elimination rule (restored: since kept by a curator)", interactive=False)
        w["lengths"] = gr.Dataframe(label="Instruction length in words per round", interactive=False)


def _difficulty_section(w: dict) -> None:
    gr.Markdown("Each instruction rated 1–10 by the LLM, as in the WizardLM paper; stored per node. "
                "Runs in the background; resumable (scored nodes are skipped, answers are cached).")
    with gr.Row(equal_height=True):
        w["score"] = gr.Button("Score difficulty", variant="primary", scale=2, elem_id="wl-score")
        w["score_cancel"] = gr.Button("Cancel", variant="stop", scale=1, elem_id="wl-score-cancel")
        w["score_all"] = gr.Checkbox(False, label="Include eliminated nodes (default: the data set)", scale=2,
                                     elem_id="wl-score-all")
    w["score_status"] = gr.HTML(elem_id="wl-score-status")
    with gr.Row():
        w["diff_plot"] = gr.BarPlot(x="difficulty", y="n", color="round", title="Difficulty per round",
                                    sort=DIFFICULTY_ORDER, x_title="difficulty (1-10)", y_title="nodes", height=300,
                                    y_lim=[0, None],
                                    elem_id="wl-diff-plot")
        w["diff_table"] = gr.Dataframe(label="Difficulty per round", interactive=False)


def _diversity_section(w: dict) -> None:
    gr.Markdown("all-MiniLM-L6-v2 embeddings (cached in the store) projected with UMAP; dispersion is the "
                "mean pairwise cosine distance (exact), per round and for the reference set.")
    with gr.Row():
        w["color_by"] = gr.Radio(["round", "operation", "status"], value="round", label="Colour by", scale=3)
        w["reference"] = gr.Dropdown([NO_REFERENCE], value=NO_REFERENCE, label="Reference set", scale=3)
        with gr.Column(scale=2, min_width=220):
            w["map_all"] = gr.Checkbox(False, label="Include eliminated nodes (default: the data set)",
                                       elem_id="wl-map-all")
            w["build_map"] = gr.Button("Build diversity map", variant="primary", elem_id="wl-build-map")
    w["map_status"] = gr.HTML(elem_id="wl-map-status")
    with gr.Row():
        w["map"] = gr.ScatterPlot(x="x", y="y", color="color", title="Diversity map", tooltip=["color", "text"],
                                  height=480, x_title=" ", y_title=" ", scale=3, elem_id="wl-map")
        w["dispersion"] = gr.Dataframe(label="Dispersion", interactive=False, scale=2)
    with gr.Accordion("Import a reference set", open=False) as w["ref_box"]:
        with gr.Row(equal_height=True):
            w["ref_file"] = gr.File(label="Any seed format, or JSONL/CSV with an instruction column", type="filepath",
                                    file_types=[".json", ".jsonl", ".csv", ".parquet"], scale=3)
            w["ref_name"] = gr.Textbox(label="Name", placeholder="default: the file name", max_lines=1, scale=1)
            w["ref_import"] = gr.Button("Import", scale=1)
        w["ref_status"] = gr.HTML()


def _export_section(w: dict) -> None:
    gr.Markdown("The training formats hold the seeds and every kept node (curators' overrides included); "
                "the lineage JSONL holds every node with its parent, round, operation and verdict.")
    with gr.Row(equal_height=True):
        w["ex_sample"] = gr.Number(0, label="Sample N records (0 = all; WizardLM-7B: 70K of 250K)", precision=0,
                                   minimum=0, scale=2, elem_id="wl-export-sample")
        w["ex_seed"] = gr.Number(0, label="Seed", precision=0, scale=1, elem_id="wl-export-seed")
        w["ex_stratify"] = gr.Checkbox(False, label="Stratify by round", scale=1)
        w["ex_shuffle"] = gr.Checkbox(False, label="Shuffle", scale=1)
        w["ex_drop"] = gr.Checkbox(False, label="Drop truncated responses", scale=1)
    with gr.Row():
        for fmt, label in FORMATS.items():
            w[f"export_{fmt}"] = gr.Button(label, elem_id=f"wl-export-{fmt}")
    w["export_file"] = gr.File(label="Download", interactive=False, file_count="multiple", height=110,
                               elem_id="wl-export-file")


# -- callbacks ------------------------------------------------------------------------------------
def _run_id(store, run_id) -> int:
    if run_id in (None, ""):
        raise UserError("choose an evolution run first")
    try:
        run = store.get_run(int(run_id))
    except (TypeError, ValueError):
        run = None
    if run is None or run["kind"] != "evolve":
        raise UserError(f"there is no evolution run {run_id}")
    return run["id"]


COUNTS = ("summary", "round_plot", "op_plot", "rule_plot", "length_plot", "rounds", "ops", "rules", "lengths")
DIFF = ("score_status", "diff_plot", "diff_table", "timer")
MAPPED = ("map", "map_status", "dispersion")


def counts_out(stats: dict) -> tuple:
    v = count_views(stats)
    return (summary_html(stats), v["round_plot"], v["op_plot"], v["rule_plot"], v["length_plot"],
            v["rounds"], v["ops"], v["rules"], v["lengths"])


def diff_out(store, run_id: int, stats: dict) -> tuple:
    job = score_job(store, run_id)
    live = bool(job and job["status"] in jobs.ACTIVE)
    return (job_html(job, "difficulty") + scored_html(stats), difficulty_hist(stats), stats["diff_table"],
            gr.Timer(active=live))


_MAPS: dict = {}  # map file -> ((mtime, size), DiversityMap): a saved map is parsed once, not per show


def load_map(path: Path) -> diversity.DiversityMap | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    sig = (st.st_mtime_ns, st.st_size)
    hit = _MAPS.get(str(path))
    if hit is None or hit[0] != sig:
        hit = _MAPS[str(path)] = (sig, diversity.DiversityMap.load(path))
    return hit[1]


def map_out(ctx: AppContext, run_id: int, color_by: str) -> tuple:
    return map_views(load_map(map_path(ctx, run_id)), color_by)


def show_views(ctx: AppContext, run_id: int, color_by: str) -> tuple:
    """Everything the Data tab shows for a run (Counts, Difficulty, Diversity): one query per figure,
    cached until the run's nodes change (`tables.run_stats`)."""
    store = ctx.store()
    stats = tables.run_stats(store, run_id)
    return (*counts_out(stats), *diff_out(store, run_id, stats), *map_out(ctx, run_id, color_by))


def reference_choices(store, value=None):
    names = [NO_REFERENCE] + [r["name"] for r in store.reference_sets()]
    return gr.Dropdown(choices=names) if value is None else gr.Dropdown(choices=names, value=value)


def _wire(ctx: AppContext, w: dict) -> None:
    _wire_run(ctx, w)
    _wire_difficulty(ctx, w)
    _wire_map(ctx, w)
    _wire_export(ctx, w)
    _read_only_for_curators(ctx, w)


WRITES = ("score", "score_cancel", "build_map", "map_all", "ref_box", "export_tab")


def _read_only_for_curators(ctx: AppContext, w: dict) -> None:
    """Hide the controls that change data or launch jobs from anyone but an admin (their
    callbacks refuse non-admins on the server anyway)."""
    def hide(request: gr.Request):
        return [gr.skip() if ctx.is_admin(request) else gr.update(visible=False) for _ in WRITES]

    on_show(hide, [w[k] for k in WRITES])


def _wire_run(ctx: AppContext, w: dict) -> None:
    shown = [w[k] for k in (*COUNTS, *DIFF, *MAPPED, "reference")]

    @ui_errors
    def show(run_id, color_by, request: gr.Request):
        ctx.require_curator(request)
        store = ctx.store()
        if not run_id:
            return (render.note("No evolution run yet: start one on the Evolve tab.", "info"),
                    *[gr.skip()] * (len(shown) - 2), reference_choices(store))
        return (*show_views(ctx, _run_id(store, run_id), color_by), reference_choices(store))

    def attach(current, request: gr.Request, keep: bool = False):
        """Fill the run list when the tab is opened (keeping the chosen run, else the newest); on
        Refresh keep the chosen one. Choosing a run (a change of the value) shows it."""
        if not ctx.can_curate(request):
            return gr.skip()
        choices = run_choices(ctx.store())
        ids = [c[1] for c in choices]
        if keep or (current not in (None, "") and _as_int(current) in ids):
            return gr.Dropdown(choices=choices)
        return gr.Dropdown(choices=choices, value=ids[0] if ids else None)

    def refresh_runs(current, request: gr.Request):
        return attach(current, request, keep=True)

    w["run"].change(show, [w["run"], w["color_by"]], shown, api_name="data_show").then(
        map_title, w["color_by"], w["map"], api_visibility="private")
    w["refresh"].click(refresh_runs, w["run"], w["run"], api_visibility="private").then(
        show, [w["run"], w["color_by"]], shown, api_visibility="private").then(
        map_title, w["color_by"], w["map"], api_visibility="private")
    on_show(attach, [w["run"]], [w["run"]], on_load=False)  # nothing is computed for a tab not opened


def _wire_difficulty(ctx: AppContext, w: dict) -> None:
    @ui_errors
    def on_score(run_id, include_eliminated, request: gr.Request):
        user = ctx.require_admin(request)
        store = ctx.store()
        run_id = _run_id(store, run_id)
        launch_score(ctx, run_id, include_eliminated, user["username"])
        return job_html(score_job(store, run_id), "difficulty"), gr.Timer(active=True)

    @ui_errors
    def on_cancel(run_id, request: gr.Request):
        ctx.require_admin(request)
        store = ctx.store()
        job = score_job(store, _run_id(store, run_id))
        if job is None:
            raise UserError("no difficulty job for this run")
        popup_info(f"Difficulty job {job['id']}: {jobs.cancel(store, job['id'])}")

    @ui_errors
    def poll(run_id, include_eliminated, request: gr.Request, redraw: bool = False):
        """A tick reads the job's progress row only; the figures are drawn again once it ends
        (or at once when the scope changes: `redraw`)."""
        ctx.require_curator(request)
        store = ctx.store()
        jobs.refresh(store)
        run_id = _run_id(store, run_id)
        job = score_job(store, run_id)
        if job and job["status"] in jobs.ACTIVE and not redraw:
            return gr.skip(), job_html(job, "difficulty"), gr.skip(), gr.skip(), gr.skip()
        stats = tables.run_stats(store, run_id, bool(include_eliminated))
        return summary_html(stats), *diff_out(store, run_id, stats)

    def rescope(run_id, include_eliminated, request: gr.Request):
        return poll(run_id, include_eliminated, request, redraw=True)

    w["score"].click(on_score, [w["run"], w["score_all"]], [w["score_status"], w["timer"]], api_name="data_score")
    w["score_cancel"].click(on_cancel, w["run"], None, api_name="data_score_cancel")
    w["timer"].tick(poll, [w["run"], w["score_all"]], [w["summary"], *[w[k] for k in DIFF]],
                    api_visibility="private", show_progress="hidden")
    w["score_all"].change(rescope, [w["run"], w["score_all"]], [w["summary"], *[w[k] for k in DIFF]],
                          api_visibility="private")


def _wire_map(ctx: AppContext, w: dict) -> None:
    mapped = [w[k] for k in MAPPED]

    @ui_errors
    def on_build(run_id, reference, include_eliminated, color_by, request: gr.Request, progress=gr.Progress()):
        user = ctx.require_admin(request)
        ref = None if reference in (None, "", NO_REFERENCE) else reference
        dmap = build_or_launch_map(ctx, _run_id(ctx.store(), run_id), ref, not include_eliminated, user["username"],
                                   progress=lambda stage, d, t: _report(progress, stage, d, t))
        if dmap is None:
            return gr.skip(), render.note("Large map: a background job is embedding and projecting it; "
                                          "press Refresh in a while (Admin tab: its log).", "info"), gr.skip()
        return map_views(dmap, color_by)

    @ui_errors
    def on_color(run_id, color_by, request: gr.Request):
        ctx.require_curator(request)
        return map_out(ctx, _run_id(ctx.store(), run_id), color_by)

    @ui_errors
    def on_import(path, name, request: gr.Request):
        ctx.require_admin(request)
        if not path:
            raise UserError("choose a reference file to upload")
        set_name, n = diversity.import_reference(ctx.store(), path, (name or "").strip() or Path(path).stem)
        return (render.note(f"Imported {n} instructions as reference set {set_name!r}.", "ok"),
                reference_choices(ctx.store(), set_name))

    inputs = [w["run"], w["reference"], w["map_all"], w["color_by"]]
    w["build_map"].click(on_build, inputs, mapped, api_name="data_build_map").then(
        map_title, w["color_by"], w["map"], api_visibility="private")
    w["color_by"].change(on_color, [w["run"], w["color_by"]], mapped, api_visibility="private").then(
        map_title, w["color_by"], w["map"], api_visibility="private")
    w["ref_import"].click(on_import, [w["ref_file"], w["ref_name"]], [w["ref_status"], w["reference"]],
                          api_name="data_import_reference")


def _report(progress, stage: str, done: int, total: int) -> None:
    """Embedding counts texts; the UMAP projection is one call, shown as indeterminate."""
    if stage == "embedding" and total:
        progress((done, total), desc="embedding new texts", unit="texts")
    else:
        progress(None, desc=f"{stage} {total} points with UMAP")


def _wire_export(ctx: AppContext, w: dict) -> None:
    def exporter(fmt):
        @ui_errors
        def on_export(run_id, sample, seed, stratify, shuffle, drop_truncated, request: gr.Request):
            ctx.require_admin(request)
            selection = export_selection(sample, seed, stratify, shuffle, drop_truncated)
            return export_file(ctx, _run_id(ctx.store(), run_id), fmt, selection)
        return on_export

    inputs = [w["run"], w["ex_sample"], w["ex_seed"], w["ex_stratify"], w["ex_shuffle"], w["ex_drop"]]
    for fmt in FORMATS:
        w[f"export_{fmt}"].click(exporter(fmt), inputs, w["export_file"], api_name=f"data_export_{fmt}")
