"""Experiments tab (admins): data recipes with live row counts, experiments from arms, their
pipeline per arm, and the report.

Recipes are `wizardlab.recipes` (stored filters over the forest); an experiment is
`wizardlab.experiments` (arms = recipe + base model + preset, run by a driver job:
export -> train -> generate per arm, then one blind campaign and the optional LLM judge);
the report is `wizardlab.evaluation.experiment_report`. The page polls the store (gr.Timer)
while an experiment runs, and re-attaches after a reload or an app restart. On an empty
database the tab offers the first-run tour (`wizardlab.tour`). Every callback checks the
admin role on the server first.
"""

from __future__ import annotations

import dataclasses

import gradio as gr
import pandas as pd

from eval_ui import render
from eval_ui.context import AppContext, on_show, ui_errors
from wizardlab import experiments, recipes
from wizardlab.errors import UserError
from wizardlab.evol.operations import OPERATIONS
from wizardlab.training.config import PRESETS

RECIPE_HEADERS = ["Recipe", "Rows now", "What it takes", "Exports"]
ARM_HEADERS = ["Arm", "Recipe", "Base model", "Rows", "Step", "Status", "Progress", "Error"]
ARM_EXAMPLE = "seeds=seeds\nr1=r1\nall=all"
TOUR_OPTIONS = None  # None: the tour's defaults (everything on the embedded model); tests set a faster one


@dataclasses.dataclass(frozen=True)
class RecipeForm:
    """The recipe form, parsed once into a `Recipe`."""

    name: str
    recipe: recipes.Recipe

    @classmethod
    def parse(cls, name, runs, max_round, operations, overrides, drop_truncated, seeds_only, sample,
              seed) -> "RecipeForm":
        try:
            run_ids = tuple(int(r) for r in str(runs or "").replace(",", " ").split())
        except ValueError:
            raise UserError(f"evolution runs: give run numbers separated by commas, got {runs!r}") from None
        recipe = recipes.Recipe(runs=run_ids, max_round=_whole(max_round, "rounds <="),
                                operations=tuple(operations or ()), overrides=bool(overrides),
                                drop_truncated=bool(drop_truncated), seeds_only=bool(seeds_only),
                                sample=_whole(sample, "sample N"), seed=int(seed or 0))
        return cls((name or "").strip(), recipe)


def _whole(value, what: str) -> int | None:
    """An optional whole number typed into a box: None when empty."""
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise UserError(f"{what}: give a whole number or leave it empty, got {text!r}")
    return int(text)


def experiment_config(testset, pairs, baseline, k, max_steps, max_length, max_tokens, judge_url, judge_model,
                      external) -> experiments.ExperimentConfig:
    if not testset:
        raise UserError("choose a test set (import one in the Evaluate tab)")
    return experiments.ExperimentConfig(
        testset=testset, pairs=pairs, baseline=(baseline or "").strip() or None, k=int(k or 1),
        external_sets=list(external or []), train={"max_steps": int(max_steps or -1), "max_length": int(max_length)},
        max_tokens=int(max_tokens) if max_tokens else None, judge_base_url=(judge_url or "").strip() or None,
        judge_model=(judge_model or "").strip() or None)


def parse_arms(text: str, base_model: str, preset: str) -> list[experiments.ArmSpec]:
    arms = [experiments.parse_arm(line, base_model, preset) for line in (text or "").splitlines() if line.strip()]
    if not arms:
        raise UserError("give one arm per line: NAME=RECIPE[:MODEL[:PRESET]]")
    return arms


# -- what the page shows ------------------------------------------------------------------------
def recipe_rows(store) -> list[list]:
    return [[v["name"], v["rows"], v["recipe"], v["exports"]] for v in
            (recipes.recipe_view(store, r) for r in store.list_recipes())]


def arms_preview(store, text: str, base_model: str, preset: str) -> str:
    """Live row counts of the arms being typed."""
    rows = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        try:
            arm = experiments.parse_arm(line, base_model, preset)
            _, recipe = recipes.require_recipe(store, arm.recipe)
            rows.append([arm.name, arm.recipe, arm.base_model, arm.preset, recipes.count(store, recipe)])
        except UserError as exc:
            rows.append([line.strip(), "", "", "", f"error: {exc}"])
    return render.table(["Arm", "Recipe", "Base model", "Preset", "Rows"], rows) if rows else ""


CAMPAIGN_WHERE = {"open": "judge it in the Judge tab", "review": "held: identity leaks to resolve in Evaluate",
                  "closed": "closed"}


def status_html(view: dict | None, campaign_status: str | None = None) -> str:
    """The experiment's head line and arms; `campaign_status` (open | review | closed) says where its
    campaign stands (a campaign held for identity leaks is not in the Judge tab yet)."""
    if view is None:
        return render.note("No experiment yet: save recipes, then define one above.")
    where = CAMPAIGN_WHERE.get(campaign_status or "open", campaign_status)
    head = (f"<p>{render.badge(view['status'])} <b>{render.esc(view['name'])}</b>"
            + (f" · campaign #{view['campaign_id']} ({render.esc(where)})" if view["campaign_id"] else "")
            + "</p>")
    err = render.note(view["error"], "error") if view["error"] else ""
    rows = [[a["name"], a["recipe"], a["base_model"], a["rows"] or "", a["step"], a["status"], a["progress"],
             render.short((a["error"] or "").splitlines()[0] if a["error"] else "", 100)] for a in view["arms"]]
    return head + err + render.table(ARM_HEADERS, rows)


def report_html(store, ref) -> str:
    from wizardlab.evaluation import experiment_report as er

    try:
        rep = er.build(store, ref, n_boot=500)
    except UserError as exc:
        return render.note(str(exc))
    parts = [f'<div class="wl-note wl-note-ok">{render.esc(rep["summary"])}</div>']
    for name, rows in er.tables(rep).items():
        if name == "summary" or not rows:
            continue
        cols = list(dict.fromkeys(k for r in rows for k in r if k != "content_hash"))
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else v  # noqa: E731
        parts.append(f"<h4>{render.esc(name.replace('_', ' '))}</h4>"
                     + render.table(cols, [[fmt(r.get(c)) for c in cols] for r in rows]))
    return "".join(parts)


def experiment_choices(store) -> list[tuple[str, int]]:
    return [(f"#{e['id']} · {e['name']} · {e['status']}", e["id"]) for e in store.list_experiments()]


# -- layout ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class ExperimentWidgets:
    """The tab's components: tour, recipe form and list, experiment form, follow-up and report."""

    tour_box: gr.Column
    tour_start: gr.Button
    tour_status: gr.HTML
    recipe_inputs: list
    recipe_count: gr.HTML
    recipe_save: gr.Button
    recipe_table: gr.Dataframe
    compare_pick: gr.Dropdown
    compare_table: gr.Dataframe
    recipe_pick: gr.Dropdown
    recipe_export: gr.DownloadButton
    recipe_delete: gr.Button
    exp_name: gr.Textbox
    arms: gr.Textbox
    base_model: gr.Dropdown
    preset: gr.Radio
    arms_preview: gr.HTML
    config_inputs: list
    create: gr.Button
    message: gr.HTML
    experiment: gr.Dropdown
    status: gr.HTML
    cancel: gr.Button
    retry_arm: gr.Textbox
    retry: gr.Button
    report: gr.HTML
    download: gr.DownloadButton
    download_data: gr.DownloadButton
    timer: gr.Timer

    @property
    def shown(self) -> list:
        return [self.status, self.report, self.timer]


def build_tab(ctx: AppContext) -> None:
    w: dict = {}
    _tour_section(w)
    with gr.Row():
        with gr.Column(scale=2, variant="panel", min_width=340):
            _recipe_form(w)
        with gr.Column(scale=3):
            _recipe_list(w)
    with gr.Row():
        with gr.Column(scale=2, variant="panel", min_width=340):
            _experiment_form(w)
        with gr.Column(scale=3):
            _follow(w)
    w["timer"] = gr.Timer(3.0, active=False)
    widgets = ExperimentWidgets(**w)
    _wire_recipes(ctx, widgets)
    _wire_experiments(ctx, widgets)
    _wire_files(ctx, widgets)
    _wire_tour(ctx, widgets)


def _tour_section(w: dict) -> None:
    with gr.Column(visible=False, variant="panel", elem_id="wl-tour") as w["tour_box"]:
        gr.Markdown("### New here? Take the tour\nOn the embedded model, offline: the 24 demo seeds evolve one round; "
                    "two arms (seeds only vs seeds + evolved) each train the embedded Gemma for a few CPU steps and "
                    "answer 10 test questions; a small campaign opens for you to judge. About 3 minutes on 2 idle "
                    "cores (longer when other work shares them).")
        w["tour_start"] = gr.Button("Take the tour", variant="primary", elem_id="wl-tour-start")
    w["tour_status"] = gr.HTML(elem_id="wl-tour-status")


def _recipe_form(w: dict) -> None:
    gr.Markdown("### Data recipe\nA named filter over the forest that yields a training set.")
    name = gr.Textbox(label="Recipe name", max_lines=1, elem_id="wl-recipe-name")
    runs = gr.Textbox(label="Evolution runs (empty = newest)", max_lines=1, placeholder="e.g. 1, 2")
    with gr.Row():
        max_round = gr.Textbox(label="Rounds <= (empty = all)", max_lines=1, placeholder="e.g. 1")
        sample = gr.Textbox(label="Sample N (empty = all)", max_lines=1, placeholder="e.g. 70000")
        seed = gr.Number(0, label="Sample seed", precision=0)
    operations = gr.CheckboxGroup(list(OPERATIONS), label="Evolved nodes of these operations (none = all)")
    with gr.Row():
        overrides = gr.Checkbox(True, label="Apply human overrides")
        drop = gr.Checkbox(False, label="Drop truncated responses")
        seeds_only = gr.Checkbox(False, label="Seeds only (Alpaca baseline)")
    w["recipe_inputs"] = [name, runs, max_round, operations, overrides, drop, seeds_only, sample, seed]
    w["recipe_count"] = gr.HTML(elem_id="wl-recipe-count")
    w["recipe_save"] = gr.Button("Save recipe", variant="primary", elem_id="wl-recipe-save")


def _recipe_list(w: dict) -> None:
    gr.Markdown("### Recipes")
    w["recipe_table"] = gr.Dataframe(headers=RECIPE_HEADERS, interactive=False, wrap=True, elem_id="wl-recipes")
    w["compare_pick"] = gr.Dropdown(label="Compare profiles of", choices=[], multiselect=True,
                                    allow_custom_value=True, elem_id="wl-recipe-compare")
    w["compare_table"] = gr.Dataframe(headers=["metric"], interactive=False, wrap=True,
                                      elem_id="wl-recipe-compare-table")
    with gr.Row():
        w["recipe_pick"] = gr.Dropdown(label="Recipe", choices=[], allow_custom_value=True, scale=2,
                                       elem_id="wl-recipe-pick")
        w["recipe_export"] = gr.DownloadButton("Export (Alpaca JSON)", scale=1, elem_id="wl-recipe-export")
        w["recipe_delete"] = gr.Button("Delete recipe", variant="stop", scale=1, elem_id="wl-recipe-delete")


def _experiment_form(w: dict) -> None:
    gr.Markdown("### New experiment")
    w["exp_name"] = gr.Textbox(label="Experiment name", max_lines=1, elem_id="wl-exp-name")
    w["arms"] = gr.Textbox(label="Arms, one per line: NAME=RECIPE[:MODEL[:PRESET]]", lines=3,
                           placeholder=ARM_EXAMPLE, elem_id="wl-exp-arms")
    with gr.Row():
        w["base_model"] = gr.Dropdown(["tiny-llama", "embedded"], value="tiny-llama", allow_custom_value=True,
                                      label="Base model (arms that name none)")
        w["preset"] = gr.Radio(list(PRESETS), value="cpu-smoke", label="Preset")
    w["arms_preview"] = gr.HTML(elem_id="wl-exp-arms-preview")
    testset = gr.Dropdown(label="Test set", choices=[], allow_custom_value=True, elem_id="wl-exp-testset")
    with gr.Row():
        pairs = gr.Radio(list(experiments.PAIRS), value="all", label="Compare")
        baseline = gr.Textbox(label="Baseline (arm or output set)", max_lines=1)
        k = gr.Number(1, label="Annotators per item", precision=0, minimum=1)
    with gr.Accordion("Training, generation, LLM judge, external output sets", open=False):
        with gr.Row():
            max_steps = gr.Number(20, label="Max steps per arm", precision=0)
            max_length = gr.Number(256, label="Max length (tokens)", precision=0)
            max_tokens = gr.Number(64, label="Max new tokens per answer", precision=0)
        with gr.Row():
            judge_url = gr.Textbox(label="LLM judge endpoint (optional)", max_lines=1)
            judge_model = gr.Textbox(label="LLM judge model", max_lines=1)
        external = gr.Dropdown(label="External output sets", choices=[], multiselect=True, allow_custom_value=True)
    w["config_inputs"] = [testset, pairs, baseline, k, max_steps, max_length, max_tokens, judge_url, judge_model,
                          external]
    w["create"] = gr.Button("Create and launch", variant="primary", elem_id="wl-exp-create")
    w["message"] = gr.HTML(elem_id="wl-exp-msg")


def _follow(w: dict) -> None:
    gr.Markdown("### Experiments")
    w["experiment"] = gr.Dropdown(label="Experiment", choices=[], allow_custom_value=True, elem_id="wl-exp-pick")
    w["status"] = gr.HTML(elem_id="wl-exp-status")
    with gr.Row():
        w["cancel"] = gr.Button("Cancel", variant="stop", scale=0, min_width=110)
        w["retry_arm"] = gr.Textbox(label="Arm", max_lines=1, scale=0, min_width=140)
        w["retry"] = gr.Button("Retry arm", scale=0, min_width=120)
    gr.Markdown("### Report")
    w["report"] = gr.HTML(elem_id="wl-exp-report")
    with gr.Row():
        w["download"] = gr.DownloadButton("Download report (HTML)", elem_id="wl-exp-download")
        w["download_data"] = gr.DownloadButton("Download report (JSON + CSV, zip)", elem_id="wl-exp-download-data")


# -- callbacks ------------------------------------------------------------------------------------
def _wire_recipes(ctx: AppContext, w: ExperimentWidgets) -> None:
    def on_change(request: gr.Request, *values):
        if not ctx.is_admin(request):
            return gr.skip()
        try:
            form = RecipeForm.parse(*values)
            return render.note(f"{recipes.count(ctx.store(), form.recipe)} rows now: {form.recipe.describe()}", "ok")
        except UserError as exc:
            return render.note(str(exc), "warn")

    @ui_errors
    def on_save(request: gr.Request, *values):
        user = ctx.require_admin(request)
        form = RecipeForm.parse(*values)
        store = ctx.store()
        recipes.create_recipe(store, form.name, form.recipe, created_by=user["username"])
        names = [r["name"] for r in store.list_recipes()]
        return (render.note(f"saved recipe {form.name!r}", "ok"), recipe_rows(store), gr.Dropdown(choices=names),
                gr.Dropdown(choices=names))

    @ui_errors
    def on_compare(names, request: gr.Request):
        ctx.require_admin(request)
        store = ctx.store()
        profiles = {n: recipes.profile(store, recipes.require_recipe(store, n)[1]) for n in names or []}
        return pd.DataFrame(recipes.compare(profiles)) if profiles else None

    for box in w.recipe_inputs:
        box.change(on_change, w.recipe_inputs, w.recipe_count, api_visibility="private", show_progress="hidden")
    w.recipe_save.click(on_save, w.recipe_inputs, [w.recipe_count, w.recipe_table, w.compare_pick, w.recipe_pick],
                        api_name="recipe_save")
    w.compare_pick.change(on_compare, w.compare_pick, w.compare_table, api_name="recipe_compare")


def _show(ctx: AppContext):
    def show(exp_id, request: gr.Request):
        if not ctx.is_admin(request) or not exp_id:
            return gr.skip(), gr.skip(), gr.Timer(active=False)
        store = ctx.store()
        view = experiments.status(store, int(exp_id))
        running = view["status"] == "running"
        campaign = store.campaign(view["campaign_id"]) if view["campaign_id"] else None
        return (status_html(view, campaign and campaign["status"]), "" if running else report_html(store, view["id"]),
                gr.Timer(active=running))
    return show


def _wire_experiments(ctx: AppContext, w: ExperimentWidgets) -> None:
    show = _show(ctx)

    def on_arms(text, base_model, preset, request: gr.Request):
        return arms_preview(ctx.store(), text, base_model, preset) if ctx.is_admin(request) else gr.skip()

    @ui_errors
    def on_create(name, arms_text, base_model, preset, request: gr.Request, *config):
        user = ctx.require_admin(request)
        store = ctx.store()
        exp_id = experiments.create_experiment(store, name, parse_arms(arms_text, base_model, preset),
                                               experiment_config(*config), data_dir=ctx.data_dir,
                                               cache_dir=ctx.settings.cache_dir, created_by=user["username"])
        experiments.launch(store, exp_id)
        return render.note(f"experiment {name!r} launched", "ok"), gr.Dropdown(
            choices=experiment_choices(store), value=exp_id)

    @ui_errors
    def on_cancel(exp_id, request: gr.Request):
        ctx.require_admin(request)
        experiments.cancel(ctx.store(), _need(exp_id))
        return render.note("cancelled", "ok")

    @ui_errors
    def on_retry(exp_id, arm, request: gr.Request):
        ctx.require_admin(request)
        status = experiments.retry(ctx.store(), _need(exp_id), (arm or "").strip())
        return render.note(f"arm {arm!r} restarted ({status})", "ok")

    @ui_errors
    def on_download(exp_id, request: gr.Request):
        ctx.require_admin(request)
        from wizardlab.evaluation import experiment_report as er

        store = ctx.store()
        exp = experiments.require_experiment(store, _need(exp_id))
        return str(er.write_html(er.build(store, exp["id"]), ctx.data_dir / "reports" /
                                 f"experiment-{experiments.slug(exp['name'])}.html"))

    for box in (w.arms, w.base_model, w.preset):
        box.change(on_arms, [w.arms, w.base_model, w.preset], w.arms_preview, api_visibility="private",
                   show_progress="hidden")
    w.create.click(on_create, [w.exp_name, w.arms, w.base_model, w.preset, *w.config_inputs],
                   [w.message, w.experiment], api_name="experiment_create")
    w.experiment.change(show, w.experiment, w.shown, api_name="experiment_status")
    w.timer.tick(show, w.experiment, w.shown, api_visibility="private", show_progress="hidden")
    w.cancel.click(on_cancel, w.experiment, w.message, api_name="experiment_cancel").then(
        show, w.experiment, w.shown, api_visibility="private")
    w.retry.click(on_retry, [w.experiment, w.retry_arm], w.message, api_name="experiment_retry").then(
        show, w.experiment, w.shown, api_visibility="private")
    w.download.click(on_download, w.experiment, w.download, api_name="experiment_report_html")
    on_show(_attach(ctx), [w.recipe_table, w.compare_pick, w.experiment, w.config_inputs[0], w.config_inputs[-1],
                           w.tour_box, w.recipe_pick])


def _wire_files(ctx: AppContext, w: ExperimentWidgets) -> None:
    """Recipe export and delete; the report as JSON + CSV tables in one zip."""
    @ui_errors
    def on_export(name, request: gr.Request):
        ctx.require_admin(request)
        if not name:
            raise UserError("choose a recipe")
        out = ctx.data_dir / "exports" / f"recipe-{experiments.slug(name)}.json"
        return recipes.export_recipe(ctx.store(), name, out)["path"]

    @ui_errors
    def on_delete(name, request: gr.Request):
        ctx.require_admin(request)
        store = ctx.store()
        row, _ = recipes.require_recipe(store, name)
        store.delete_recipe(row["id"])
        return render.note(f"deleted recipe {name!r}", "ok"), recipe_rows(store)

    @ui_errors
    def on_data(exp_id, request: gr.Request):
        ctx.require_admin(request)
        store = ctx.store()
        exp = experiments.require_experiment(store, _need(exp_id))
        return str(report_zip(store, exp, ctx.data_dir / "reports"))

    w.recipe_export.click(on_export, w.recipe_pick, w.recipe_export, api_name="recipe_export")
    w.recipe_delete.click(on_delete, w.recipe_pick, [w.recipe_count, w.recipe_table], api_name="recipe_delete")
    w.download_data.click(on_data, w.experiment, w.download_data, api_name="experiment_report_data")


def report_zip(store, exp: dict, folder) -> str:
    """The experiment report as report.json plus one CSV per table, zipped."""
    import json
    import tempfile
    import zipfile
    from pathlib import Path

    from wizardlab.evaluation import experiment_report as er

    rep = er.build(store, exp["id"])
    path = Path(folder) / f"experiment-{experiments.slug(exp['name'])}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("report.json", json.dumps(rep, indent=2, default=str))
        for csv_path in er.write_csv(rep, tmp):
            zf.write(csv_path, csv_path.name)
    return str(path)


def _attach(ctx: AppContext):
    """Fill the lists on load and when the tab is selected; pick the newest experiment."""
    def attach(request: gr.Request):
        if not ctx.is_admin(request):
            return (gr.skip(),) * 7
        from wizardlab import tour

        store = ctx.store()
        experiments.resume_interrupted(store)
        exps = experiment_choices(store)
        testsets = [t["testset"] for t in store.testsets()]
        return (recipe_rows(store), gr.Dropdown(choices=[r["name"] for r in store.list_recipes()]),
                gr.Dropdown(choices=exps, value=exps[0][1] if exps else None),
                gr.Dropdown(choices=testsets, value=testsets[0] if testsets else None),
                gr.Dropdown(choices=[s["name"] for s in store.list_output_sets()]),
                gr.Column(visible=tour.offered(store)),
                gr.Dropdown(choices=[r["name"] for r in store.list_recipes()]))
    return attach


def _need(exp_id) -> int:
    if not exp_id:
        raise UserError("choose an experiment")
    return int(exp_id)


# -- the first-run tour ----------------------------------------------------------------------------
TOUR_MARK = {"done": "✓", "running": "…", "failed": "✗", "todo": "·", "cancelled": "✗"}


def tour_html(store) -> str:
    from wizardlab import tour

    runs = store.list_runs(tour.KIND, limit=1)
    if not runs:
        return ""
    run = runs[0]
    rows = [[TOUR_MARK.get(s["state"], "·"), s["step"], s["state"], s["explanation"]] for s in tour.progress(store)]
    exp = store.experiment(tour.NAME)
    end = ""
    if exp and exp["campaign_id"]:
        end = tour_campaign_note(store, exp["campaign_id"])
    elif run["status"] in ("failed", "cancelled"):
        end = render.note(f"The tour {run['status']}: {(run['error'] or '').splitlines()[:1]}", "error")
    return "<h4>First-run tour</h4>" + render.table(["", "Step", "State", "What happens"], rows) + end


def tour_campaign_note(store, campaign_id: int) -> str:
    """The tour's last word: its campaign is open (judge it), or held because answers name a model
    (the identity check before blinding; the tiny test model's random words do now and then, e.g.
    "claude"): annotators, the admin included, see it in the Judge tab only once each hit is resolved."""
    from eval_ui import rater_sections

    campaign = store.campaign(campaign_id)
    status = campaign["status"] if campaign else "gone"
    if status == "open":
        return render.note(f"Campaign #{campaign_id} is open: judge it in the Judge tab, then read the report below.",
                           "ok")
    if status == "review":
        hits = store.identity_hits(campaign_id)
        n = sum(h["status"] == "open" for h in hits)
        said = f"{n} answer names" if n == 1 else f"{n} answers name"
        return render.note(f"Campaign #{campaign_id} is held: {said} a model or vendor. Resolve each under "
                           "Evaluate, Campaigns, Manage a campaign (keep a false alarm, edit or drop it); the "
                           "campaign then opens in the Judge tab.", "warn") + rater_sections.leaks_html(hits)
    if status == "closed":
        return render.note(f"Campaign #{campaign_id} is closed: reopen it under Evaluate, Campaigns to judge it.",
                           "warn")
    return render.note(f"Campaign #{campaign_id} no longer exists.", "warn")


def _wire_tour(ctx: AppContext, w: ExperimentWidgets) -> None:
    timer = gr.Timer(3.0, active=False)

    @ui_errors
    def on_start(request: gr.Request):
        from wizardlab import tour

        user = ctx.require_admin(request)
        tour.start(ctx.store(), ctx.settings, log_dir=ctx.log_dir, created_by=user["username"],
                   options=TOUR_OPTIONS or tour.TourOptions())
        return gr.Column(visible=False), tour_html(ctx.store()), gr.Timer(active=True)

    def on_tick(request: gr.Request):
        if not ctx.is_admin(request):
            return gr.skip(), gr.Timer(active=False)
        from wizardlab import tour

        store = ctx.store()
        runs = store.list_runs(tour.KIND, limit=1)
        live = bool(runs and runs[0]["status"] in ("queued", "running", "pending"))
        return tour_html(store), gr.Timer(active=live)

    w.tour_start.click(on_start, None, [w.tour_box, w.tour_status, timer], api_name="tour_start")
    timer.tick(on_tick, None, [w.tour_status, timer], api_visibility="private", show_progress="hidden")
    on_show(on_tick, [w.tour_status, timer])
