"""`python -m pipeline generate`: an output set of answers to a test set, from any backend.

    generate --testset-file wizardlm_testset.jsonl [--testset NAME] [--name SET]
             [--base-url URL --model NAME | --model CHECKPOINT_DIR | (embedded model)]
    generate --run-id N            (continue / resume generation run N)
Writes each answer as it arrives; a restarted run skips prompts already answered, and the
LLM-call cache means nothing is paid twice. SIGTERM/Ctrl-C stop cleanly (run marked
cancelled). As a job it resumes the run it was launched for (`wizardlab.evaluation.generate`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from tqdm import tqdm

from wizardlab.errors import UserError

from wizardlab.llm import params

HELP = "Generate an output set for a test set with a checkpoint or an endpoint."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--run-id", type=int, default=None, help="resume this generation run")
    parser.add_argument("--testset", default=None, help="stored test set name (or the name to give the file's)")
    parser.add_argument("--testset-file", default=None, help="WizardLM / Vicuna / seed-format test set file")
    parser.add_argument("--name", default=None, help="output set name (default: <test set>/<model>)")
    parser.add_argument("--base-url", action="append",
                        help="OpenAI-compatible endpoint; give it several times for a pool: "
                        "URL[,model=NAME][,weight=W]")
    parser.add_argument("--model", default=None, help="endpoint model name, or a local checkpoint directory")
    parser.add_argument("--concurrency", type=int, default=None, help="parallel requests (default 16)")
    params.add_arguments(parser, ("generate",))


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.evaluation.generate import prepare_generation
    from wizardlab.jobs import current_job_id
    from wizardlab.store import Store

    settings = Settings.from_env(db=args.db, base_url=args.base_url, model=args.model, concurrency=args.concurrency)
    store = Store(settings.db)
    run_id = args.run_id or current_job_id()
    if run_id is None:
        run_id = prepare_generation(store, settings, testset=args.testset, testset_file=args.testset_file,
                                    name=args.name, max_tokens=args.max_tokens, temperature=args.temperature,
                                    top_p=args.top_p)
        print(f"generation run {run_id}", file=sys.stderr)
    elif store.get_run(run_id) is None:
        raise UserError(f"run {run_id} does not exist")
    return run(store, run_id)


def run(store, run_id: int) -> int:
    from wizardlab.evaluation.generate import generate_outputs
    from wizardlab.jobs import job_run

    bar = tqdm(unit="prompt", desc=f"generating (run {run_id})", file=sys.stderr, dynamic_ncols=True)
    with job_run(store, run_id) as job:

        def progress(p: dict) -> None:
            bar.total = p["total"]
            bar.update(p["done"] - bar.n)
            job.progress({**p, "phase": "generate", "elapsed_s": time.time() - p["started"]},
                         force=p["done"] >= p["total"])

        try:
            result = asyncio.run(generate_outputs(store, run_id, stop=job.stop, on_progress=progress))
        finally:
            bar.close()
        job.progress({**result, "phase": "done" if not result["stopped"] else "stopped"}, force=True)
        if not job.stopping and result["done"] < result["total"]:
            job.fail(result.get("last_error") or "some prompts were not answered")
    status = store.get_run(run_id)["status"]
    print(f"run {run_id}: {result['done']}/{result['total']} answered, {result['errors']} errors ({status})",
          file=sys.stderr)
    return 0 if status != "failed" else 1
