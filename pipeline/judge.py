"""`python -m pipeline judge`: the LLM judge over a campaign, asked in both orders.

    judge --campaign NAME|ID [--mode pairwise|score] [--base-url URL --model NAME | --model CHECKPOINT
          | embedded] [--limit N]
`--mode pairwise` (default): a verdict [[A]]/[[B]]/[[C]]; a flip between the two orders
counts as a tie (see wizardlab.evaluation.judge); stored as judgments of annotator
"llm:<model>". `--mode score`: Vicuna's GPT-4 review protocol, both answers scored 1-10 in
one review, both orders averaged (see wizardlab.evaluation.score_judge); stored with the
scores as annotator "llm-score:<model>", and `pipeline report` shows the capacity ratio
(sampling: Vicuna's reviewer settings, temperature 0.2 and 1024 tokens, unless
--temperature / --top-p / --max-tokens say otherwise). Both are compared with the humans
in `pipeline report`. Resumable (judged items are skipped, LLM calls cached) and
SIGTERM-safe; as a job it reports into the run it was launched for.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from tqdm import tqdm

from wizardlab.llm import params

HELP = "Run the LLM judge (pairwise verdicts or Vicuna-style 1-10 scores) on a campaign, in both orders."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--campaign", required=True, help="campaign name or id")
    parser.add_argument("--base-url", action="append",
                        help="OpenAI-compatible endpoint; give it several times for a pool: "
                        "URL[,model=NAME][,weight=W]")
    parser.add_argument("--model", default=None, help="endpoint model name, or a local checkpoint directory")
    parser.add_argument("--concurrency", type=int, default=None, help="parallel requests (default 16)")
    parser.add_argument("--limit", type=int, default=None, help="judge at most N items in this pass")
    parser.add_argument("--mode", choices=("pairwise", "score"), default="pairwise",
                        help="pairwise verdicts (default) or Vicuna-style 1-10 scores of both answers")
    params.add_arguments(parser, ("judge",))


def main(args) -> int:
    from wizardlab import evaluation
    from wizardlab.config import Settings
    from wizardlab.jobs import current_job_id
    from wizardlab.store import Store

    settings = Settings.from_env(db=args.db, base_url=args.base_url, model=args.model, concurrency=args.concurrency)
    store = Store(settings.db)
    campaign = evaluation.require_campaign(store, args.campaign)
    sampling = params.from_arguments(args, ("judge",))
    run_id = current_job_id() or store.create_run(
        "judge", {"campaign": campaign["id"], "base_url": settings.base_url, "model": settings.model,
                  "concurrency": settings.concurrency, "limit": args.limit, "sampling": sampling, "mode": args.mode},
        name=f"LLM judge on {campaign['name']}")
    return run(store, settings, campaign, run_id, args.limit, sampling, args.mode)


def run(store, settings, campaign: dict, run_id: int, limit: int | None, sampling: dict | None = None,
        mode: str = "pairwise") -> int:
    from wizardlab.evaluation.judge import judge_campaign
    from wizardlab.evaluation.score_judge import score_campaign
    from wizardlab.jobs import job_run
    from wizardlab.llm import LLMClient, make_backend

    with job_run(store, run_id) as job:
        client = LLMClient(make_backend(settings), store=store, run_id=run_id, concurrency=settings.concurrency,
                           timeout=settings.request_timeout, max_retries=settings.max_retries)
        bar = tqdm(unit="item", desc=f"judging {campaign['name']}", file=sys.stderr, dynamic_ncols=True)

        def progress(p: dict) -> None:
            bar.total = p["total"]
            bar.update(p["done"] + p["errors"] + p["parse_failures"] - bar.n)
            bar.set_postfix(flips=p["flips"], unparsed=p["parse_failures"], errors=p["errors"])
            job.progress(_progress(p, client))

        async def go():
            try:
                judge = score_campaign if mode == "score" else judge_campaign
                return await judge(store, client, campaign, stop=job.stop, on_progress=progress,
                                   limit=limit, grace_s=settings.stop_grace_s, sampling=sampling)
            finally:
                await client.aclose()

        try:
            result = asyncio.run(go())
        finally:
            bar.close()
        job.progress({**_progress(result, client), "phase": "done"}, force=True)
    status = store.get_run(run_id)["status"]
    print(f"{result['annotator']}: {result['done']} judged ({result['flips']} flips counted as ties), "
          f"{result['parse_failures']} unparseable, {result['errors']} errors ({status})", file=sys.stderr)
    return 0


def _progress(p: dict, client) -> dict:
    return {**{k: v for k, v in p.items() if k != "started"}, "phase": "judging",
            "elapsed_s": time.time() - p["started"], "calls": client.stats.calls,
            "cache_hits": client.stats.cache_hits}
