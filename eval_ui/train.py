"""Train tab (admins): fine-tune a base model on curated data as a background job, and watch it.

Launch = `wizardlab.training.launch_training` (a `runs` row + a detached job on the
"train" queue running pipeline/train_sft.py). The page polls the run row and the run's
`progress.jsonl` (gr.Timer) for the loss curve, throughput, ETA and the log, and
re-attaches after a reload or an app restart: everything it shows comes from the store
and the run's files. Stop = SIGTERM (the job saves a checkpoint); Resume continues from
the newest checkpoint; Delete removes the run and its files. A finished run records its
model directory in the run's config (`model_dir`) for output generation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from eval_ui import render
from eval_ui.context import AppContext, on_show, ui_errors
from wizardlab import jobs
from wizardlab.errors import UserError
from wizardlab.training import (PRESETS, build_argv, launch_training, make_config, preview,
                                read_progress, resume_training, run_view, stop_training)
from wizardlab.training.config import Hardware, TrainConfig
from wizardlab.training.launch import delete_training, loss_points

EXPORT_NOW = "Export the current curated data now"
EXPORTED = "An exported file"
MODELS = {"Embedded Gemma 3 270M": "embedded", "tiny-llama (random, for smoke tests)": "tiny-llama",
          "Local directory or hub id": None}
DEEPSPEED = {"none": None, "zero2": 2, "zero3": 3}
ACTIVE = ("pending", "queued", "running")
HISTORY_HEADERS = ["Run", "Status", "Base model", "Data", "Preset", "Steps", "Last loss", "Started by", "Created (UTC)",
                   "Model dir"]
# the override fields shown in the form, in order: (field, label, kind)
OVERRIDES = [("epochs", "Epochs", float), ("learning_rate", "Learning rate", float),
             ("max_length", "Max length (tokens)", int), ("batch_size", "Batch size per device", int),
             ("grad_accum", "Gradient accumulation", int), ("max_steps", "Max steps (-1 = epochs)", int),
             ("warmup_ratio", "Warmup ratio", float), ("save_steps", "Checkpoint every N steps", int),
             ("logging_steps", "Log every N steps", int), ("seed", "Random seed", int),
             ("nproc", "Processes (GPUs per node)", int)]


_DETECT = ("import dataclasses, json; from wizardlab.training.config import detect_hardware; "
           "print(json.dumps(dataclasses.asdict(detect_hardware())))")


_HARDWARE: list[Hardware] = []
_HARDWARE_LOCK = threading.Lock()


def hardware() -> Hardware:
    """This machine's GPUs/CPUs (a process-wide fact, not user state), detected once in a child
    process: the app itself never imports torch (hundreds of MB and seconds of CPU). Callers
    that come while it is being detected wait for that one detection."""
    with _HARDWARE_LOCK:
        if not _HARDWARE:
            _HARDWARE.append(_detect_hardware())
        return _HARDWARE[0]


def warm_hardware() -> threading.Thread:
    """Detect the hardware now, in the background (`python app.py` does at start): the Train form's
    preview, which an admin's page load also computes, then costs no child process with torch
    (~2.5 s of CPU) at the first login."""
    thread = threading.Thread(target=hardware, name="detect hardware", daemon=True)
    thread.start()
    return thread


def _detect_hardware() -> Hardware:
    root = Path(__file__).resolve().parent.parent
    try:
        res = subprocess.run([sys.executable, "-c", _DETECT], capture_output=True, text=True, timeout=300, cwd=root,
                             env={**os.environ, "PYTHONPATH": str(root)}, check=True)
        return Hardware(**json.loads(res.stdout.strip().splitlines()[-1]))
    except (subprocess.SubprocessError, OSError, ValueError, IndexError, TypeError):
        return Hardware(cpus=os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class TrainForm:
    """The launch form, parsed once: where the data comes from, the base model, the config values."""

    data_source: str
    data_file: str | None
    evolve_run: int | None
    model: str
    values: dict

    @classmethod
    def parse(cls, data_source, data_file, evolve_run, model_choice, model_path, preset, scheduler, deepspeed,
              offload, checkpointing, precision, *numbers) -> "TrainForm":
        if model_choice not in MODELS:
            raise UserError(f"choose a base model ({', '.join(MODELS)})")
        model = MODELS[model_choice] or (model_path or "").strip()
        if not model:
            raise UserError("give the base model's local directory or hub id")
        if data_source == EXPORTED and not (data_file or "").strip():
            raise UserError("choose an exported data file, or export the current curated data")
        values = {"preset": preset, "scheduler": scheduler, "deepspeed": DEEPSPEED.get(deepspeed, deepspeed),
                  "offload": bool(offload), "gradient_checkpointing": bool(checkpointing), "precision": precision}
        for (name, label, kind), value in zip(OVERRIDES, numbers):
            values[name] = _number(label, value, kind)
        return cls(data_source, (data_file or "").strip() or None, int(evolve_run) if evolve_run else None,
                   model, values)

    def config(self, data: str, output_dir: str) -> TrainConfig:
        values = dict(self.values)
        cfg = make_config(values.pop("preset"), data=data, output_dir=output_dir, model=self.model, **values)
        if values["deepspeed"] is None:  # make_config keeps the preset's stage for None
            cfg = dataclasses.replace(cfg, deepspeed=None)
        return cfg


def _number(label: str, value, kind):
    if value is None or value == "":
        raise UserError(f"{label}: give a number")
    if kind is int and int(value) != value:
        raise UserError(f"{label}: give a whole number, got {value}")
    return kind(value)


def new_output_dir(ctx: AppContext, model: str, stamp: str | None = None) -> str:
    """<data dir>/train/<UTC time of launch>-<model>; `stamp` stands in for the time in a preview."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return str((ctx.data_dir / "train" / f"{stamp}-{Path(model).name or 'model'}").resolve())


def exported_files(ctx: AppContext) -> list[str]:
    folder = ctx.data_dir / "exports"
    return sorted((str(p.resolve()) for p in folder.glob("*.json")), reverse=True) if folder.is_dir() else []


def export_now(ctx: AppContext, evolve_run: int | None) -> str:
    """Write the curated training set (seeds + kept evolutions) as Alpaca JSON; returns its path."""
    from wizardlab.export import export_dataset

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = ctx.data_dir / "exports" / f"alpaca-run{evolve_run or 'latest'}-{stamp}.json"
    return str(export_dataset(ctx.store(), evolve_run, out, "alpaca").resolve())


def command_preview(ctx: AppContext, form: TrainForm) -> str:
    data = form.data_file if form.data_source == EXPORTED else str(ctx.data_dir / "exports" / "<exported at launch>.json")
    cfg = form.config(data, new_output_dir(ctx, form.model, stamp="<time of launch>"))
    return preview(build_argv(cfg, hardware(), db=str(Path(ctx.settings.db).resolve())), multiline=True)


def launch(ctx: AppContext, form: TrainForm, user: str) -> int:
    data = export_now(ctx, form.evolve_run) if form.data_source == EXPORT_NOW else form.data_file
    cfg = form.config(data, new_output_dir(ctx, form.model))
    store = ctx.store()
    jobs.refresh(store)
    return launch_training(store, cfg, cache_dir=ctx.settings.cache_dir, hardware=hardware(), created_by=user)


# -- what the page shows ---------------------------------------------------------------------

def run_choices(store) -> list[tuple[str, int]]:
    return [(f"#{r['id']} · {r.get('name') or ''} · {render.when(r['created_at'])}", r["id"])
            for r in store.list_runs("train")]


def default_run(store) -> int | None:
    runs = store.list_runs("train")
    active = [r for r in runs if r["status"] in ACTIVE]
    return (active or runs or [{"id": None}])[0]["id"]


def status_html(run: dict | None) -> str:
    if run is None:
        return render.note("No training run yet. Choose data and a base model, then press Train.", "info")
    v, c = run_view(run), run["config"]
    head = (f'<div class="wl-run-head">{render.badge(run["status"])} <b>Run {run["id"]}</b> · '
            f'{render.esc(c.get("model"))} on {render.esc(Path(c.get("data", "")).name)} · '
            f'preset {render.esc(c.get("preset"))}</div>')
    parts = [head]
    if v["max_steps"]:
        parts.append(render.bar(v["step"] or 0, v["max_steps"], f"step {v['step'] or 0}/{v['max_steps']}"))
    stats = [("Loss", f"{v['loss']:.4f}" if v["loss"] is not None else "-"),
             ("Tokens/s", f"{v['tokens_per_s']:,.0f}" if v["tokens_per_s"] is not None else "-"),
             ("ETA", render.duration(v["eta_s"]) if run["status"] == "running" else "-"),
             ("Checkpoint", v["checkpoint"] or "-"), ("Exit code", v["exit_code"] if v["exit_code"] is not None else "-")]
    parts.append('<div class="wl-stats">' + "".join(
        f'<div class="wl-stat"><div class="wl-stat-v">{render.esc(val)}</div>'
        f'<div class="wl-stat-k">{render.esc(key)}</div></div>' for key, val in stats) + "</div>")
    if v["model_dir"]:
        parts.append(render.note(f"Model saved: {v['model_dir']} (registered for output generation)", "ok"))
    if run["status"] == "failed" and run.get("error"):
        parts.append(render.note("Failed: " + run["error"].splitlines()[0], "error"))
    parts.append(f'<div class="wl-muted">Command: {render.esc(preview(c.get("argv") or []))}</div>')
    return "".join(parts)


def loss_frame(run: dict | None) -> pd.DataFrame:
    points = loss_points(read_progress(run["config"]["output_dir"])) if run and run["config"].get("output_dir") else []
    return pd.DataFrame({"step": [p["step"] for p in points], "loss": [p["loss"] for p in points]})


def history_rows(store) -> list[list]:
    rows = []
    for r in store.list_runs("train"):
        c, v = r["config"], run_view(r)
        rows.append([r["id"], r["status"], render.short(c.get("model"), 40), Path(c.get("data", "")).name,
                     c.get("preset"), f"{v['step'] or 0}/{v['max_steps'] or '?'}",
                     "" if v["loss"] is None else round(v["loss"], 4), r.get("created_by") or "",
                     render.when(r["created_at"]), c.get("model_dir") or ""])
    return rows


def config_json(run: dict | None) -> dict:
    return {k: v for k, v in (run or {}).get("config", {}).items() if k != "_job"}


# -- layout ------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainWidgets:
    """The Train tab's components: the launch form, the run monitor and the history table."""

    data_source: gr.Radio
    evolve_run: gr.Dropdown
    data_file: gr.Dropdown
    model_choice: gr.Radio
    model_path: gr.Textbox
    preset: gr.Radio
    scheduler: gr.Dropdown
    deepspeed: gr.Dropdown
    precision: gr.Dropdown
    offload: gr.Checkbox
    checkpointing: gr.Checkbox
    numbers: list
    command: gr.Code
    launch: gr.Button
    message: gr.HTML
    run: gr.Dropdown
    stop: gr.Button
    resume: gr.Button
    delete: gr.Button
    confirm: gr.Checkbox
    status: gr.HTML
    plot: gr.LinePlot
    log: gr.Textbox
    config: gr.JSON
    history: gr.Dataframe = None
    timer: gr.Timer = None

    @property
    def form_inputs(self) -> list:
        """The launch form's values in `TrainForm.parse` order."""
        return [self.data_source, self.data_file, self.evolve_run, self.model_choice, self.model_path, self.preset,
                self.scheduler, self.deepspeed, self.offload, self.checkpointing, self.precision, *self.numbers]

    @property
    def shown(self) -> list:
        """What `show` fills for the selected run."""
        return [self.status, self.plot, self.log, self.config, self.history, self.timer]


def build_tab(ctx: AppContext) -> None:
    with gr.Row():
        with gr.Column(scale=2, variant="panel", min_width=340):
            form = _form(ctx)
        with gr.Column(scale=3):
            w = TrainWidgets(**form, **_monitor())
    gr.Markdown("### All training runs")
    w.history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, wrap=True, elem_id="wl-train-runs")
    w.timer = gr.Timer(2.0, active=False)
    _wire_form(ctx, w)
    _wire_runs(ctx, w)


def _form(ctx: AppContext) -> dict:
    w: dict = {}
    gr.Markdown("### New training run")
    w["data_source"] = gr.Radio([EXPORT_NOW, EXPORTED], value=EXPORT_NOW, label="Data snapshot", elem_id="wl-train-data")
    w["evolve_run"] = gr.Dropdown(label="Evolution run to export (empty = newest)", choices=[], allow_custom_value=True)
    w["data_file"] = gr.Dropdown(label="Exported Alpaca JSON file (or type a path)", choices=[],  # filled at load
                                 allow_custom_value=True, visible=False, elem_id="wl-train-file")
    w["model_choice"] = gr.Radio(list(MODELS), value=next(iter(MODELS)), label="Base model", elem_id="wl-train-model")
    w["model_path"] = gr.Textbox(label="Directory or hub id (org/name; hub only when online)", visible=False,
                                 max_lines=1, elem_id="wl-train-model-path")
    w["preset"] = gr.Radio(list(PRESETS), value="cpu-smoke", label="Preset", elem_id="wl-train-preset",
                           info="wizardlm: the paper's settings (3 epochs, lr 2e-5, 2048 tokens, ZeRO-3); "
                                "cpu-smoke: a few steps on a CPU")
    with gr.Accordion("Settings (filled from the preset)", open=False):
        smoke = PRESETS["cpu-smoke"]
        with gr.Row():
            w["scheduler"] = gr.Dropdown(["cosine", "linear", "constant", "constant_with_warmup"],
                                         value=smoke["scheduler"], label="LR schedule")
            w["deepspeed"] = gr.Dropdown(list(DEEPSPEED), value="none", label="DeepSpeed ZeRO")
            w["precision"] = gr.Dropdown(["auto", "bf16", "fp16", "fp32"], value=smoke["precision"], label="Precision")
        with gr.Row():
            w["offload"] = gr.Checkbox(False, label="CPU offload (ZeRO)")
            w["checkpointing"] = gr.Checkbox(smoke["gradient_checkpointing"], label="Gradient checkpointing")
        w["numbers"] = []
        for start in range(0, len(OVERRIDES), 3):
            with gr.Row():
                w["numbers"] += [gr.Number(_preset_value("cpu-smoke", name), label=label, elem_id=f"wl-train-{name}",
                                           min_width=100) for name, label, _ in OVERRIDES[start:start + 3]]
    w["command"] = gr.Code(label="Command preview", language="shell", interactive=False, elem_id="wl-train-command")
    w["launch"] = gr.Button("Train", variant="primary", elem_id="wl-train-launch")
    w["message"] = gr.HTML(elem_id="wl-train-msg")
    return w


def _preset_value(preset: str, name: str):
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return PRESETS[preset].get(name, defaults.get(name))


def _monitor() -> dict:
    w: dict = {}
    gr.Markdown("### Runs")
    w["run"] = gr.Dropdown(label="Run", choices=[], allow_custom_value=True, elem_id="wl-train-run")
    with gr.Row():
        w["stop"] = gr.Button("Stop (save checkpoint)", variant="stop", scale=0, min_width=160, elem_id="wl-train-stop")
        w["resume"] = gr.Button("Resume", scale=0, min_width=110, elem_id="wl-train-resume")
        w["delete"] = gr.Button("Delete run and files", scale=0, min_width=160, elem_id="wl-train-delete")
        w["confirm"] = gr.Checkbox(False, label="yes, delete", scale=0, min_width=110, elem_id="wl-train-confirm")
    w["status"] = gr.HTML(render.note("Loading…"), elem_id="wl-train-status")
    w["plot"] = gr.LinePlot(pd.DataFrame({"step": [], "loss": []}), x="step", y="loss", title="Training loss",
                            height=260, elem_id="wl-train-plot")
    with gr.Accordion("Log", open=False):
        w["log"] = gr.Textbox(label="Last lines", lines=10, max_lines=20, interactive=False, autoscroll=True,
                              elem_id="wl-train-log")
    with gr.Accordion("Run config", open=False):
        w["config"] = gr.JSON(elem_id="wl-train-config")
    return w


# -- callbacks ---------------------------------------------------------------------------------

def _show(ctx: AppContext):
    """The callback that fills the monitor for one run (after every action and on each timer tick)."""
    def show(run_id, request: gr.Request):
        if not ctx.is_admin(request):
            return (*[gr.skip()] * 5, gr.Timer(active=False))
        store = ctx.store()
        run = store.get_run(int(run_id)) if run_id else None
        if run and run["status"] in ACTIVE:
            jobs.refresh(store)  # a vanished job becomes failed; a queued one starts when the queue is free
            run = store.get_run(run["id"])
        live = bool(run and run["status"] in ACTIVE)
        return (status_html(run), loss_frame(run), jobs.log_tail(run.get("log_path"), 40) if run else "",
                config_json(run), history_rows(store), gr.Timer(active=live))
    return show


def _wire_form(ctx: AppContext, w: TrainWidgets) -> None:
    """The launch form: live command preview, presets, and the Train button."""
    def on_preview(request: gr.Request, *values):
        if not ctx.is_admin(request):
            return gr.skip()
        try:
            return command_preview(ctx, TrainForm.parse(*values))
        except UserError as exc:
            return f"# {exc}"

    def on_preset(preset):
        return [gr.update(value=PRESETS[preset]["scheduler"]),
                gr.update(value={None: "none", 2: "zero2", 3: "zero3"}[PRESETS[preset]["deepspeed"]]),
                gr.update(value=PRESETS[preset]["precision"]),
                gr.update(value=PRESETS[preset]["gradient_checkpointing"]),
                *[gr.update(value=_preset_value(preset, name)) for name, _, _ in OVERRIDES]]

    @ui_errors
    def on_launch(request: gr.Request, *values):
        user = ctx.require_admin(request)
        run_id = launch(ctx, TrainForm.parse(*values), user["username"])
        status = ctx.store().get_run(run_id)["status"]
        text = f"Run {run_id} {'started' if status == 'running' else 'queued behind the running one'}."
        return render.note(text, "ok"), gr.Dropdown(choices=run_choices(ctx.store()), value=run_id)

    w.data_source.change(lambda s: (gr.update(visible=s == EXPORTED), gr.update(visible=s == EXPORT_NOW)),
                         w.data_source, [w.data_file, w.evolve_run], api_visibility="private")
    w.model_choice.change(lambda m: gr.update(visible=MODELS.get(m) is None), w.model_choice, w.model_path,
                          api_visibility="private")
    w.preset.change(on_preset, w.preset, [w.scheduler, w.deepspeed, w.precision, w.checkpointing, *w.numbers],
                    api_visibility="private")
    for component in w.form_inputs:
        component.change(on_preview, w.form_inputs, w.command, api_visibility="private", show_progress="hidden")
    w.launch.click(on_launch, w.form_inputs, [w.message, w.run], api_name="train_launch").then(
        _show(ctx), w.run, w.shown, api_visibility="private")
    on_show(on_preview, [w.command], w.form_inputs, on_load=False)  # computed when the tab is opened


def _wire_runs(ctx: AppContext, w: TrainWidgets) -> None:
    """The monitor: attach on show, poll while live, stop / resume / delete."""
    show = _show(ctx)

    def attach(request: gr.Request):
        if not ctx.is_admin(request):
            return gr.skip(), gr.skip(), gr.skip()
        store = ctx.store()
        jobs.refresh(store)  # jobs whose process vanished (app restart, crash) become failed
        evolve = [(f"#{r['id']} · {r.get('name') or ''}", r["id"]) for r in store.list_runs("evolve")]
        return (gr.Dropdown(choices=run_choices(store), value=default_run(store)),
                gr.Dropdown(choices=evolve, value=evolve[0][1] if evolve else None),
                gr.Dropdown(choices=exported_files(ctx)))

    @ui_errors
    def on_stop(run_id, request: gr.Request):
        ctx.require_admin(request)
        return render.note(f"Run {_need(run_id)}: {stop_training(ctx.store(), _need(run_id))}.", "ok")

    @ui_errors
    def on_resume(run_id, request: gr.Request):
        ctx.require_admin(request)
        store = ctx.store()
        jobs.refresh(store)
        status = resume_training(store, _need(run_id), cache_dir=ctx.settings.cache_dir, hardware=hardware())
        return render.note(f"Run {run_id}: {status} from its newest checkpoint.", "ok")

    @ui_errors
    def on_delete(run_id, confirmed, request: gr.Request):
        ctx.require_admin(request)
        if not confirmed:
            raise UserError("tick 'yes, delete' first: this removes the run's checkpoints and model")
        delete_training(ctx.store(), _need(run_id))
        store = ctx.store()
        return (render.note(f"Run {run_id} and its files deleted.", "ok"),
                gr.Dropdown(choices=run_choices(store), value=default_run(store)), False)

    w.stop.click(on_stop, w.run, w.message, api_name="train_stop").then(show, w.run, w.shown, api_visibility="private")
    w.resume.click(on_resume, w.run, w.message, api_name="train_resume").then(
        show, w.run, w.shown, api_visibility="private")
    w.delete.click(on_delete, [w.run, w.confirm], [w.message, w.run, w.confirm], api_name="train_delete").then(
        show, w.run, w.shown, api_visibility="private")
    w.run.change(show, w.run, w.shown, api_name="train_progress")
    w.timer.tick(show, w.run, w.shown, api_visibility="private", show_progress="hidden")
    on_show(attach, [w.run, w.evolve_run, w.data_file])


def _need(run_id) -> int:
    if not run_id:
        raise UserError("choose a run first")
    return int(run_id)
