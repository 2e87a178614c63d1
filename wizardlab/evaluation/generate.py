"""Generate an output set: one answer per test-set prompt, through any LLM backend.

`prepare_generation` imports the test set (when given a file), creates the `runs` row
(kind "generate") and the output set it fills, or finds the same run again (same test
set, name, model and sampling) so that launching it again resumes. `generate_outputs`
answers every prompt that has no output yet, writing each answer as it arrives, and
stops cleanly when `stop()` turns true (a SIGTERM in the job). The job wrapper with
progress bars is `pipeline.generate`.
"""

from __future__ import annotations

import hashlib
import json
import time

from wizardlab.config import Settings
from wizardlab.errors import UserError
from wizardlab.evaluation.outputs import import_testset
from wizardlab.llm import LLMClient, LLMError, make_backend, params
from wizardlab.llm.workers import pump


def prepare_generation(store, settings: Settings, *, testset: str | None = None, testset_file: str | None = None,
                       name: str | None = None, max_tokens: int | None = None, temperature: float | None = None,
                       top_p: float | None = None, created_by: str | None = None) -> int:
    """The run id of the generation (new or found again); raises UserError on bad input.
    Unset generation settings take the defaults of the "generate" stage (`wizardlab.llm.params`)."""
    _overrides({"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p})  # validates
    if testset_file:
        testset, _ = import_testset(store, testset_file, testset)
    if not testset or not store.prompts_of(testset):
        raise UserError(f"test set {testset!r} has no prompts; import it first or give a test-set file")
    model = settings.model if not settings.uses_embedded_llm else "embedded-gemma-3-270m"
    name = name or f"{testset}/{model}"
    config = {"testset": testset, "output_set": name, "base_url": settings.base_url, "model": settings.model,
              "max_tokens": max_tokens, "temperature": temperature, "concurrency": settings.concurrency}
    if top_p is not None:  # absent otherwise: the key of earlier runs stays the same
        config["top_p"] = top_p
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    existing = store.find_run("generate", key)
    if existing and store.output_set_by_run(existing["id"]):
        return existing["id"]
    if store.output_set(name):
        raise UserError(f"output set {name!r} already exists; choose another --name")
    run_id = store.create_run("generate", config, name=name, config_key=key, created_by=created_by)
    store.create_output_set(name, model, testset, "generate", run_id=run_id)
    return run_id


def start_generation(store, settings: Settings, *, log_dir, **kwargs) -> tuple[int, str]:
    """`prepare_generation(**kwargs)` and start it as a background job on the "llm" queue;
    returns (run id, job status)."""
    from wizardlab import jobs

    run_id = prepare_generation(store, settings, **kwargs)
    return run_id, jobs.launch(store, run_id, "generate", ["--run-id", run_id], log_dir=log_dir, queue="llm")


def _overrides(cfg: dict) -> dict:
    return params.check_overrides({"generate": {k: cfg[k] for k in params.KEYS if cfg.get(k) is not None}})


def run_settings(run: dict) -> Settings:
    cfg = run["config"]
    return Settings.from_env(base_url=cfg.get("base_url"), model=cfg.get("model"),
                             concurrency=cfg.get("concurrency"))


async def generate_outputs(store, run_id: int, *, client: LLMClient | None = None, stop=lambda: False,
                           on_progress=None, grace_s: float = 10.0) -> dict:
    """Answer every prompt of the run's test set that has no output yet; returns the progress dict."""
    run = store.get_run(run_id)
    if run is None or run["kind"] != "generate":
        raise UserError(f"run {run_id} is not a generation run")
    cfg = run["config"]
    out_set = store.output_set_by_run(run_id)
    done = store.done_prompt_ids(out_set["id"])
    todo = [p for p in store.prompts_of(cfg["testset"]) if p["id"] not in done]
    if client is None:
        settings = run_settings(run)
        client = LLMClient(make_backend(settings), store=store, run_id=run_id, concurrency=settings.concurrency,
                           timeout=settings.request_timeout, max_retries=settings.max_retries)
    progress = {"done": len(done), "total": len(done) + len(todo), "errors": 0, "started": time.time()}
    sampling = params.for_backend("generate", client.backend, _overrides(cfg))

    async def answer(prompt: dict) -> None:
        try:
            result = await client.complete([{"role": "user", "content": prompt["text"]}], purpose="generate",
                                           salt=f"generate:{prompt['id']}", **sampling.kwargs())
        except LLMError as exc:
            progress["errors"] += 1
            progress["last_error"] = str(exc)
            return
        store.add_outputs(out_set["id"], [(prompt["id"], result.text)])
        progress["done"] += 1
        if on_progress:
            on_progress(progress)

    progress["stopped"] = await pump(todo, answer, concurrency=client.concurrency, stop=stop, grace_s=grace_s)
    return progress
