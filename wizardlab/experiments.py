"""Experiments: a named comparison of arms, run from recipes to one blind campaign.

An arm is a data recipe (`wizardlab.recipes`) plus a base model and a training preset.
Launching an experiment starts its driver, a job (`python -m pipeline experiment drive`,
kind "experiment") that calls `advance` every few seconds until the end. `advance` is a
state machine over stored state only, so it can stop and start at any time:

- per arm, in order: export (a `recipe export` job) -> train (`training.launch_training`,
  the "train" queue) -> generate on the test set (`evaluation.generate.start_generation`,
  the "llm" queue); a step starts when the one before it is done;
- when every arm has its output set: one blind campaign over all arms (all pairs, or each
  arm vs a baseline), optionally with external output sets, k annotators per item;
- then, optionally, the LLM judge on that campaign (a `judge` job).

A failed step fails its arm (the others go on); the experiment then ends failed naming
the arm and the step, and `retry(arm)` starts that arm again from the failed step. After
an app restart `resume_interrupted` relaunches the driver of every running experiment
(queued steps start again through `jobs.refresh`). Every process is started by
`wizardlab.jobs`; this module only decides what runs next.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from wizardlab import jobs
from wizardlab.errors import UserError

KIND = "experiment"
STEPS = ("export", "train", "generate")
PAIRS = ("all", "baseline")
POLL_S = 2.0


@dataclass
class ArmSpec:
    name: str
    recipe: str  # recipe name or id
    base_model: str = "tiny-llama"
    preset: str = "cpu-smoke"


@dataclass
class ExperimentConfig:
    """What is the same for every arm, and how they are compared."""

    testset: str  # a stored test set (import one with `generate --testset-file` or the Evaluate tab)
    pairs: str = "all"  # all pairs of arms, or every arm vs `baseline`
    baseline: str | None = None  # an arm name or an external output set (pairs = baseline)
    k: int = 1  # annotators per item
    external_sets: list[str] = field(default_factory=list)  # output sets compared with the arms
    train: dict = field(default_factory=dict)  # TrainConfig overrides for every arm (e.g. max_steps)
    max_tokens: int | None = None  # generation settings for every arm
    temperature: float | None = None
    judge_base_url: str | None = None  # the LLM judge's endpoint (none: no LLM judge)
    judge_model: str | None = None
    out_dir: str | None = None  # exports, checkpoints and logs (default <data_dir>/experiments/<name>)
    seed: int = 0  # campaign order and sides

    def __post_init__(self) -> None:
        if self.pairs not in PAIRS:
            raise UserError(f"experiment: pairs must be one of {', '.join(PAIRS)}, got {self.pairs!r}")
        if self.pairs == "baseline" and not self.baseline:
            raise UserError("experiment: pairs = baseline needs a baseline (an arm or an output set)")
        if self.k < 1:
            raise UserError(f"experiment: k (annotators per item) must be at least 1, got {self.k}")
        if bool(self.judge_base_url) != bool(self.judge_model):
            raise UserError("experiment: the LLM judge needs both judge_base_url and judge_model")

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def parse_arm(text: str, base_model: str = "tiny-llama", preset: str = "cpu-smoke") -> ArmSpec:
    """'NAME=RECIPE[:MODEL[:PRESET]]' (the CLI's --arm, one line of the tab's arm box) -> ArmSpec."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise UserError(f"arm {text.strip()!r}: expected NAME=RECIPE[:MODEL[:PRESET]]")
    parts = [p.strip() for p in rest.split(":")] + ["", ""]
    return ArmSpec(name=name.strip(), recipe=parts[0], base_model=parts[1] or base_model, preset=parts[2] or preset)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"


# -- define ---------------------------------------------------------------------------------
def create_experiment(store, name: str, arms: list[ArmSpec], config: ExperimentConfig, *, data_dir: str | Path,
                      cache_dir: str | Path | None = None, created_by: str | None = None) -> int:
    """Check everything that can be checked now, then store the experiment and its arms. `cache_dir`
    (built base models) is stored with it, so its jobs use the caller's, whoever drives them."""
    from wizardlab import recipes
    from wizardlab.training.config import make_config

    name = (name or "").strip()
    if not name:
        raise UserError("an experiment needs a name")
    if len(arms) + len(config.external_sets) < 2 or not arms:
        raise UserError("an experiment needs at least two arms (or one arm and an external output set)")
    rows = []
    for arm in arms:
        if not arm.name.strip():
            raise UserError("every arm needs a name")
        recipe_row, recipe = recipes.require_recipe(store, arm.recipe)
        if recipes.count(store, recipe) == 0:
            raise UserError(f"arm {arm.name!r}: recipe {recipe_row['name']!r} selects no records")
        make_config(arm.preset, data="check.json", output_dir="check", model=arm.base_model, **config.train)
        rows.append({"name": arm.name.strip(), "recipe_id": recipe_row["id"], "base_model": arm.base_model,
                     "preset": arm.preset})
    _check_sets(store, config, [a["name"] for a in rows])
    out_dir = config.out_dir or str(Path(data_dir).resolve() / "experiments" / slug(name))
    extra = {"out_dir": out_dir, **({"cache_dir": str(cache_dir)} if cache_dir else {})}
    return store.create_experiment(name, {**asdict(config), **extra}, rows, created_by)


def _check_sets(store, config: ExperimentConfig, arm_names: list[str]) -> None:
    if not store.prompts_of(config.testset):
        raise UserError(f"test set {config.testset!r} has no prompts; import it first")
    for ref in config.external_sets:
        s = store.output_set(ref)
        if s is None:
            raise UserError(f"external output set {ref!r} does not exist")
        if s["testset"] != config.testset:
            raise UserError(f"output set {s['name']!r} answers test set {s['testset']!r}, not {config.testset!r}")
    if config.pairs == "baseline" and config.baseline not in arm_names + list(config.external_sets):
        raise UserError(f"baseline {config.baseline!r} is neither an arm nor one of the external output sets")


def require_experiment(store, ref) -> dict:
    exp = store.experiment(ref)
    if exp is None:
        raise UserError(f"experiment {ref!r} does not exist")
    return exp


# -- launch, stop, retry, resume -------------------------------------------------------------
def launch(store, ref) -> str:
    """Start (or restart) the experiment's driver job; returns its job status."""
    exp = require_experiment(store, ref)
    driver = store.get_run(exp["driver_run_id"]) if exp["driver_run_id"] else None
    if driver is not None and jobs.is_live(driver):
        raise UserError(f"experiment {exp['name']!r} is already running")
    if exp["status"] == "done":
        raise UserError(f"experiment {exp['name']!r} is done; read its report")
    if driver is None:
        run_id = store.create_run(KIND, {"experiment": exp["id"]}, name=f"experiment {exp['name']}",
                                  created_by=exp["created_by"])
        store.update_experiment(exp["id"], driver_run_id=run_id)
    else:
        run_id = driver["id"]
    store.update_experiment(exp["id"], status="running", error=None)
    log_dir = Path(exp["config"]["out_dir"]) / "logs"
    return jobs.launch(store, run_id, "experiment", ["drive", exp["id"]], log_path=log_dir / f"driver-{run_id}.log")


def cancel(store, ref) -> None:
    """Stop the driver and every step still queued or running; the experiment ends cancelled."""
    exp = require_experiment(store, ref)
    run_ids = [exp["driver_run_id"], exp["judge_run_id"]] + [
        a[f"{s}_run_id"] for a in store.experiment_arms(exp["id"]) for s in STEPS]
    for run_id in filter(None, run_ids):
        run = store.get_run(run_id)
        if run is not None and jobs.is_live(run):
            jobs.cancel(store, run_id)
    store.update_experiment(exp["id"], status="cancelled")


def retry(store, ref, arm_name: str) -> str:
    """Start arm `arm_name` again from its failed (or cancelled) step; relaunches the driver."""
    exp = require_experiment(store, ref)
    arm = next((a for a in store.experiment_arms(exp["id"]) if a["name"] == arm_name), None)
    if arm is None:
        raise UserError(f"experiment {exp['name']!r} has no arm {arm_name!r}")
    state = arm_state(store, arm)
    if state["status"] not in ("failed", "cancelled"):
        raise UserError(f"arm {arm_name!r} has not failed (step {state['step']}: {state['status']})")
    later = STEPS[STEPS.index(state["step"]):]
    store.update_arm(arm["id"], attempt=arm["attempt"] + 1, **{f"{s}_run_id": None for s in later})
    driver = store.get_run(exp["driver_run_id"]) if exp["driver_run_id"] else None
    if driver is not None and jobs.is_live(driver):
        store.update_experiment(exp["id"], status="running", error=None)
        return "running"
    return launch(store, exp["id"])


def resume_interrupted(store) -> list[int]:
    """Relaunch the driver of every running experiment whose driver process is gone (after a restart)."""
    jobs.refresh(store)
    resumed = []
    for exp in store.list_experiments("running"):
        driver = store.get_run(exp["driver_run_id"]) if exp["driver_run_id"] else None
        if driver is None or not jobs.is_live(driver):
            launch(store, exp["id"])
            resumed.append(exp["id"])
    return resumed


# -- the state machine ------------------------------------------------------------------------
def arm_state(store, arm: dict) -> dict:
    """{step, status, error, run_id}: the first step not done, or generate/done."""
    for step in STEPS:
        run_id = arm[f"{step}_run_id"]
        run = store.get_run(run_id) if run_id else None
        if run is None:
            return {"step": step, "status": "todo", "error": None, "run_id": None}
        if run["status"] != "done":
            status = run["status"] if run["status"] in ("failed", "cancelled", "queued") else "running"
            return {"step": step, "status": status, "error": run.get("error"), "run_id": run_id}
    return {"step": "generate", "status": "done", "error": None, "run_id": arm["generate_run_id"]}


def advance(store, ref, settings) -> dict:
    """One pass: start every step that can start; create the campaign and the judge when due;
    set the experiment's end state. Returns `status(store, ref)`."""
    exp = require_experiment(store, ref)
    if exp["status"] != "running":
        return status(store, exp["id"])
    jobs.refresh(store)
    states = []
    for arm in store.experiment_arms(exp["id"]):
        state = arm_state(store, arm)
        if state["status"] == "todo":
            _start_step(store, exp, arm, state["step"], settings)
            arm = next(a for a in store.experiment_arms(exp["id"]) if a["id"] == arm["id"])
            state = arm_state(store, arm)
        states.append((arm, state))
    if any(s["status"] in ("todo", "queued", "running") for _, s in states):
        return status(store, exp["id"])
    failed = [(a, s) for a, s in states if s["status"] != "done"]
    if failed:
        error = "; ".join(f"arm {a['name']!r} failed at {s['step']}: {(s['error'] or s['status']).splitlines()[0]}"
                          for a, s in failed)
        store.update_experiment(exp["id"], status="failed", error=error)
        return status(store, exp["id"])
    try:
        _finish(store, exp, settings)
    except UserError as exc:  # the campaign or the judge was refused: say so, do not retry forever
        store.update_experiment(exp["id"], status="failed", error=f"after the arms: {exc}")
    return status(store, exp["id"])


def _finish(store, exp: dict, settings) -> None:
    """All arms generated: the campaign, then the LLM judge (when asked), then done."""
    exp = require_experiment(store, exp["id"])
    if exp["campaign_id"] is None:
        exp["campaign_id"] = _create_campaign(store, exp)
    cfg = ExperimentConfig.from_dict(exp["config"])
    if cfg.judge_model:
        judge = store.get_run(exp["judge_run_id"]) if exp["judge_run_id"] else None
        if judge is None:
            _start_judge(store, exp, cfg)
            return
        if judge["status"] in ("failed", "cancelled"):
            store.update_experiment(exp["id"], status="failed",
                                    error=f"LLM judge {judge['status']}: {(judge['error'] or '').splitlines()[:1]}")
            return
        if judge["status"] != "done":
            return
    store.update_experiment(exp["id"], status="done", error=None)


def _start_step(store, exp: dict, arm: dict, step: str, settings) -> None:
    """Start the arm's step as a job; a step refused before it starts (no such base model, a test set
    gone...) is recorded as a failed run of that step, so the arm says where it stopped."""
    arm_dir = Path(exp["config"]["out_dir"]) / slug(arm["name"])
    suffix = f"-{arm['attempt']}" if arm["attempt"] else ""
    try:
        if step == "export":
            run_id = _start_export(store, exp, arm, arm_dir / f"train{suffix}.json")
        elif step == "train":
            run_id = _start_train(store, exp, arm, _free_dir(arm_dir / f"model{suffix}"), settings)
        else:
            run_id = _start_generate(store, exp, arm, settings, suffix)
    except UserError as exc:
        run_id = store.create_run(step, {"experiment": exp["id"], "arm": arm["name"]}, status="failed",
                                  name=f"{exp['name']} / {arm['name']}: {step}", created_by=exp["created_by"])
        store.mark_run(run_id, "failed", error=str(exc))
    store.update_arm(arm["id"], **{f"{step}_run_id": run_id})


def _free_dir(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`... when a driver that died mid-start left it behind, not empty."""
    candidate, n = path, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _start_export(store, exp: dict, arm: dict, out: Path) -> int:
    run_id = store.create_run("export", {"experiment": exp["id"], "arm": arm["name"], "recipe": arm["recipe"],
                                         "out": str(out)}, name=f"{exp['name']} / {arm['name']}: export",
                              created_by=exp["created_by"])
    jobs.launch(store, run_id, "recipe", ["export", arm["recipe"], "--out", out, "--run-id", run_id],
                log_dir=Path(exp["config"]["out_dir"]) / "logs", queue="export")
    return run_id


def _start_train(store, exp: dict, arm: dict, out: Path, settings) -> int:
    from wizardlab.training.config import make_config
    from wizardlab.training.launch import launch_training

    export = store.recipe_export_by_run(arm["export_run_id"])
    if export is None:
        raise UserError(f"arm {arm['name']!r}: its export run {arm['export_run_id']} recorded no export")
    cfg = make_config(arm["preset"], data=export["path"], output_dir=str(out), model=arm["base_model"],
                      **exp["config"].get("train", {}))
    return launch_training(store, cfg, cache_dir=exp["config"].get("cache_dir") or settings.cache_dir,
                           created_by=exp["created_by"],
                           name=f"{exp['name']} / {arm['name']}: train")


def _start_generate(store, exp: dict, arm: dict, settings, suffix: str) -> int:
    from wizardlab.config import Settings
    from wizardlab.evaluation.generate import start_generation

    model_dir = store.get_run(arm["train_run_id"])["config"].get("model_dir")
    if not model_dir:
        raise UserError(f"arm {arm['name']!r}: training run {arm['train_run_id']} left no model")
    gen = Settings.from_env(db=str(store.path), base_url="", model=model_dir, concurrency=4,
                            cache_dir=exp["config"].get("cache_dir") or settings.cache_dir)
    cfg = exp["config"]
    run_id, _ = start_generation(store, gen, log_dir=Path(cfg["out_dir"]) / "logs", testset=cfg["testset"],
                                 name=f"{exp['name']} / {arm['name']}{suffix}", max_tokens=cfg.get("max_tokens"),
                                 temperature=cfg.get("temperature"), created_by=exp["created_by"])
    return run_id


def arm_output_sets(store, exp: dict) -> dict[str, dict]:
    """arm name -> its output set (arms that have generated)."""
    out = {}
    for arm in store.experiment_arms(exp["id"]):
        s = store.output_set_by_run(arm["generate_run_id"]) if arm["generate_run_id"] else None
        if s is not None:
            out[arm["name"]] = s
    return out


def _create_campaign(store, exp: dict) -> int:
    from wizardlab.evaluation.campaigns import create_campaign

    cfg = ExperimentConfig.from_dict(exp["config"])
    sets = {name: s["id"] for name, s in arm_output_sets(store, exp).items()}
    sets.update({ref: store.output_set(ref)["id"] for ref in cfg.external_sets})
    order = list(sets)
    if cfg.pairs == "baseline":
        order.remove(cfg.baseline)
        order.insert(0, cfg.baseline)
    cid = create_campaign(store, f"experiment {exp['name']}", [sets[n] for n in order],
                          pairs="all" if cfg.pairs == "all" else "baseline", k=cfg.k, seed=cfg.seed,
                          created_by=exp["created_by"])
    store.update_experiment(exp["id"], campaign_id=cid)
    return cid


def _start_judge(store, exp: dict, cfg: ExperimentConfig) -> None:
    run_id = store.create_run("judge", {"campaign": exp["campaign_id"], "base_url": cfg.judge_base_url,
                                        "model": cfg.judge_model}, name=f"{exp['name']}: LLM judge",
                              created_by=exp["created_by"])
    store.update_experiment(exp["id"], judge_run_id=run_id)
    jobs.launch(store, run_id, "judge", ["--campaign", exp["campaign_id"], "--base-url", cfg.judge_base_url,
                                         "--model", cfg.judge_model],
                log_dir=Path(exp["config"]["out_dir"]) / "logs", queue="llm")


# -- the driver and the view -----------------------------------------------------------------
def drive(store, experiment_id: int, run_id: int, settings, poll_s: float = POLL_S) -> dict:
    """Inside the driver job: `advance` until the experiment is no longer running (or a stop)."""
    with jobs.job_run(store, run_id) as job:
        while True:
            view = advance(store, experiment_id, settings)
            job.progress({"phase": view["status"], "arms": {a["name"]: f"{a['step']}: {a['status']}"
                                                            for a in view["arms"]}})
            if view["status"] != "running" or job.stopping:
                break
            time.sleep(poll_s)
        if view["status"] == "failed":
            job.fail(view["error"] or "an arm failed")
    return view


def status(store, ref) -> dict:
    """What the CLI and the tab show: the experiment, each arm's step and status, the campaign."""
    exp = require_experiment(store, ref)
    arms = []
    for arm in store.experiment_arms(exp["id"]):
        state = arm_state(store, arm)
        run = store.get_run(state["run_id"]) if state["run_id"] else None
        export = store.recipe_export_by_run(arm["export_run_id"]) if arm["export_run_id"] else None
        arms.append({"name": arm["name"], "recipe": arm["recipe"], "base_model": arm["base_model"],
                     "preset": arm["preset"], **{k: state[k] for k in ("step", "status", "error")},
                     "progress": jobs.progress_line(run) if run else "", "rows": export and export["n_rows"],
                     "attempt": arm["attempt"]})
    return {"id": exp["id"], "name": exp["name"], "status": exp["status"], "error": exp["error"],
            "campaign_id": exp["campaign_id"], "judge_run_id": exp["judge_run_id"], "arms": arms,
            "config": exp["config"]}
