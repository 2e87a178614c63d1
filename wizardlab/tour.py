"""The first-run tour: the whole loop on the embedded model, offline, on a CPU, in one go.

1. evolve: the 24 demo seeds, one round of Evol-Instruct on the embedded Gemma (a job);
2. recipes: "tour: seeds only" (the Alpaca baseline) and "tour: seeds + evolved";
3-5. a two-arm experiment (`wizardlab.experiments`): per arm export -> train the embedded
   Gemma for a few CPU steps -> answer the 10 tour questions (`data/tour_testset.jsonl`);
6. a small blind campaign over both arms, which the admin can judge at once (Judge tab).

`run_tour` does it in the calling process, waiting on each job (the command line:
`python -m pipeline tour --db PATH`, which prints the campaign id at the end); `start`
runs the same as a job (the Experiments tab's "Take the tour" button); `progress` reads
where it is from the store, so the panel follows it after a reload. Nothing is asked.
"""

from __future__ import annotations

import importlib.resources
import time
from dataclasses import asdict, dataclass

from wizardlab import experiments, jobs, recipes
from wizardlab.errors import UserError

KIND = "tour"
NAME = "tour"
TESTSET = "tour questions"
SEEDS_ONLY, EVOLVED = "tour: seeds only", "tour: seeds + evolved"
STEPS = [
    ("evolve", "Evolve: the 24 demo seeds go through one round of Evol-Instruct on the embedded Gemma: each seed is "
               "rewritten by one of the six operations, answered, and checked by the elimination rules."),
    ("recipes", "Recipes: two named filters over the forest: the seeds only (the Alpaca baseline), and the seeds "
                "plus every kept evolution."),
    ("export", "Export: each arm's training set is written, with its row count, content hash and profile."),
    ("train", "Train: each arm fine-tunes the embedded Gemma 3 270M for a few steps on this CPU."),
    ("generate", "Generate: each trained model answers the 10 tour questions."),
    ("campaign", "Campaign: a blind pairwise campaign over both arms' answers opens. Judge it in the Judge tab; "
                 "the report is in the Experiments tab."),
]
EMBEDDED_ENV = {"WIZARDLAB_BASE_URL": "", "WIZARDLAB_MODEL": ""}  # jobs of the tour use the embedded model
TRAIN = {"max_steps": 3, "max_length": 128, "batch_size": 2, "save_steps": 100}
MAX_TOKENS = 48
SAMPLING = {"evolve": {"max_tokens": 64}, "respond": {"max_tokens": 96}}  # short answers: a tour, not a data set


@dataclass(frozen=True)
class TourOptions:
    """The tour's models: by default everything on the embedded Gemma, offline. An endpoint for the
    evolution and another base model (e.g. tiny-llama) make a faster tour for tests."""

    base_model: str = "embedded"
    base_url: str | None = None  # evolve on this OpenAI-compatible endpoint instead of the embedded model
    model: str | None = None


def offered(store) -> bool:
    """An empty database (no evolution run, no experiment): the app offers the tour."""
    return store.latest_run_id("evolve") is None and not store.list_experiments() and not store.list_runs(KIND)


def _data(name: str) -> str:
    return str(importlib.resources.files("wizardlab") / "data" / name)


def start(store, settings, *, log_dir, created_by: str | None = None, options: TourOptions = TourOptions()) -> int:
    """Run the tour as a job; returns its run id (the options go into the run's config)."""
    live = [r for r in store.list_runs(KIND) if jobs.is_live(r)]
    if live:
        raise UserError(f"the tour is already running (run {live[0]['id']})")
    from pathlib import Path

    run_id = store.create_run(KIND, asdict(options), name="first-run tour", created_by=created_by)
    env = {**EMBEDDED_ENV, "WIZARDLAB_DATA_DIR": str(Path(settings.data_dir).resolve()),
           "WIZARDLAB_CACHE_DIR": str(settings.cache_dir)}  # the app's folders, not the job's defaults
    jobs.launch(store, run_id, "tour", ["--run-id", run_id], log_dir=log_dir, env=env)
    return run_id


def run_tour(store, settings, *, log_dir, created_by: str | None = None, say=print, poll_s: float = 2.0,
             options: TourOptions = TourOptions()) -> dict:
    """Every step in turn, each job awaited; returns {evolve_run, experiment, campaign_id}. Resumable:
    a step already done (found in the store) is not done again."""
    from wizardlab.evaluation import import_testset

    say(STEPS[0][1])
    evolve_id = _evolve(store, settings, options, log_dir, created_by, poll_s)
    say(STEPS[1][1])
    for name, recipe in ((SEEDS_ONLY, recipes.Recipe(runs=(evolve_id,), seeds_only=True)),
                         (EVOLVED, recipes.Recipe(runs=(evolve_id,)))):
        if store.recipe(name) is None:
            recipes.create_recipe(store, name, recipe, created_by=created_by)
    import_testset(store, _data("tour_testset.jsonl"), TESTSET)
    exp = store.experiment(NAME) or store.experiment(experiments.create_experiment(
        store, NAME, [experiments.ArmSpec("seeds only", SEEDS_ONLY, options.base_model),
                      experiments.ArmSpec("seeds + evolved", EVOLVED, options.base_model)],
        experiments.ExperimentConfig(testset=TESTSET, k=1, train=dict(TRAIN), max_tokens=MAX_TOKENS),
        data_dir=settings.data_dir, cache_dir=settings.cache_dir, created_by=created_by))
    if exp["status"] != "done":
        _run_experiment(store, exp, say, poll_s)
    exp = store.experiment(exp["id"])
    if exp["status"] != "done":
        raise UserError(f"the tour's experiment ended {exp['status']}: {exp['error']}")
    say(STEPS[-1][1])
    return {"evolve_run": evolve_id, "experiment": exp["id"], "campaign_id": exp["campaign_id"]}


def _evolve(store, settings, options: TourOptions, log_dir, created_by, poll_s: float) -> int:
    from wizardlab.config import EMBEDDED_MODEL, Settings
    from wizardlab.evol import run as evol_run

    llm = Settings.from_env(db=str(store.path), base_url=options.base_url or "",
                            model=options.model or EMBEDDED_MODEL, cache_dir=settings.cache_dir)
    run_id = evol_run.prepare_run(store, llm, _data("demo_seeds.jsonl"), rounds=1, created_by=created_by,
                                  sampling=SAMPLING)
    run = store.get_run(run_id)
    if run["status"] != "done":
        if not jobs.is_live(run):
            env = EMBEDDED_ENV if not options.base_url else {"WIZARDLAB_BASE_URL": options.base_url,
                                                             "WIZARDLAB_MODEL": options.model or ""}
            jobs.launch(store, run_id, "evolve", ["--run-id", run_id, "--quiet"], log_dir=log_dir, env=env)
        run = _wait_run(store, run_id, poll_s)
    if run["status"] != "done":
        raise UserError(f"the tour's evolution run {run_id} ended {run['status']}: {run.get('error')}")
    return run_id


def _wait_run(store, run_id: int, poll_s: float) -> dict:
    while True:
        jobs.refresh(store)
        run = store.get_run(run_id)
        if run["status"] in ("done", "failed", "cancelled") and not jobs.process_alive(run):
            return run
        time.sleep(poll_s)


def _run_experiment(store, exp: dict, say, poll_s: float) -> None:
    if exp["status"] != "running" or not jobs.is_live(store.get_run(exp["driver_run_id"]) or {"status": "gone"}):
        experiments.launch(store, exp["id"])
    said = set()
    while (view := experiments.status(store, exp["id"]))["status"] == "running":
        for arm in view["arms"]:
            if arm["step"] not in said and arm["status"] in ("running", "queued"):
                said.add(arm["step"])
                say(dict(STEPS)[arm["step"]])
        time.sleep(poll_s)


def progress(store) -> list[dict]:
    """Each step with its explanation and state (todo / running / done / failed), from the store."""
    evolve = store.list_runs("evolve", limit=1)
    exp = store.experiment(NAME)
    view = experiments.status(store, exp["id"]) if exp else None
    states = {"evolve": evolve[0]["status"] if evolve else "todo",
              "recipes": "done" if store.recipe(EVOLVED) else "todo"}
    for step in ("export", "train", "generate"):
        states[step] = _step_state(view, step)
    states["campaign"] = "done" if view and view["campaign_id"] else (
        "failed" if view and view["status"] == "failed" else "todo")
    return [{"step": s, "explanation": text, "state": "running" if states[s] in ("queued", "pending") else states[s]}
            for s, text in STEPS]


def _step_state(view: dict | None, step: str) -> str:
    if view is None:
        return "todo"
    order = experiments.STEPS.index(step)
    states = []
    for arm in view["arms"]:
        at = experiments.STEPS.index(arm["step"])
        states.append("done" if at > order or (at == order and arm["status"] == "done") else
                      arm["status"] if at == order else "todo")
    for state in ("failed", "running", "queued"):
        if state in states:
            return state
    return "done" if all(s == "done" for s in states) else "todo"
