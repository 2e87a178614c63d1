"""`python -m pipeline evolve`: create or resume an evolution run and drive the engine.

The same command on the same database continues the same run (see `wizardlab.evol.run`):
an interrupted run resumes, a finished one says so and does nothing, and asking for more
rounds extends it.

Exit status: 0 done, 3 cancelled or failed, 4 (`EXIT_FAILED_CALLS`) when the run stopped
because some LLM calls failed after all retries: those nodes are retryable, not eliminated;
run the same command again to retry them, or add `--give-up-failed`.
"""

from __future__ import annotations

import sys

from wizardlab.config import Settings
from wizardlab.errors import UserError
from wizardlab.evol.rules import PAPER, RULE_MODES
from wizardlab.evol.run import (extend_rounds, format_summary, give_up_failed, is_finished, prepare_run,
                                run_evolution, summary)
from wizardlab.jobs import current_job_id
from wizardlab.llm import params
from wizardlab.store import Store

EXIT_FAILED_CALLS = 4


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite file (default: wizardlab.db or WIZARDLAB_DB)")
    parser.add_argument("--seeds", help="seed file (JSON, JSONL, CSV, Parquet), a saved datasets dir or a hub name")
    parser.add_argument("--run-id", type=int, help="continue this run (instead of --seeds)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of evolution (default 4)")
    parser.add_argument("--base-url", action="append",
                        help="OpenAI-compatible endpoint; none = the embedded model; give it several times for a pool: "
                        "URL[,model=NAME][,weight=W]")
    parser.add_argument("--model", help="model name at the endpoint, or a local model directory")
    parser.add_argument("--concurrency", type=int, default=None, help="parallel LLM calls (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for operation choice (replayable)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N seeds")
    parser.add_argument("--timeout", type=float, default=None, help="per-request timeout in seconds (default 120)")
    parser.add_argument("--max-retries", type=int, default=None, help="retries per call on 429/5xx/timeouts")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="cap on tokens per LLM answer")
    params.add_arguments(parser, params.EVOLVE_STAGES)
    parser.add_argument("--rules", choices=RULE_MODES, default=PAPER,
                        help="elimination rules as the paper words them (default), or lenient")
    parser.add_argument("--give-up-failed", action="store_true",
                        help="give up on nodes whose LLM calls failed after all retries: they become malformed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    base = Settings.from_env(db=args.db, base_url=args.base_url, model=args.model, concurrency=args.concurrency,
                             request_timeout=args.timeout, max_retries=args.max_retries,
                             max_new_tokens=args.max_new_tokens)
    store = Store(base.db)
    run_id = args.run_id or current_job_id()
    if run_id is None:
        if not args.seeds:
            raise UserError("give --seeds FILE (or --run-id N to continue a run)")
        run_id = prepare_run(store, base, args.seeds, rounds=args.rounds or 4, seed=args.seed, limit=args.limit,
                             sampling=params.from_arguments(args, params.EVOLVE_STAGES), rules=args.rules)
    run = store.get_run(run_id)
    if run is None:
        raise UserError(f"run {run_id} does not exist in {base.db}")
    if args.run_id:
        run = extend_rounds(store, run, args.rounds)
    if args.give_up_failed:
        print(f"run {run_id}: gave up on {give_up_failed(store, run_id)} node(s) with failed calls "
              f"(now eliminated as malformed)", file=sys.stderr)
    if is_finished(store, run):
        print(f"run {run_id} already finished ({run['config']['rounds']} rounds); nothing to do.")
        print(format_summary(summary(store, run_id, wall_s=0.0, session={}, status="done")))
        return 0
    print(f"run {run_id}: {run['config']['n_seeds']} seeds, {run['config']['rounds']} rounds, "
          f"LLM: {run['config'].get('llm')}", file=sys.stderr)
    result = run_evolution(store, run_id, base, show_progress=not args.quiet)
    print(format_summary(result))
    if result["status"] == "done":
        return 0
    return EXIT_FAILED_CALLS if result["failed_calls"] and result["status"] == "failed" else 3
