"""`python -m pipeline embed`: embed a run's instructions, project them with UMAP, report diversity.

Embeds the texts missing from the store's cache (all-MiniLM-L6-v2, offline) with a progress
bar, projects run nodes and an optional reference set together in 2-D, prints the mean
pairwise cosine distance per round and for the reference set, and writes the map as PNG or
JSON (`--out`). The map JSON is what the Data tab shows, so a job can build a big map while
the page stays responsive. Stops cleanly on SIGTERM (embeddings done so far stay cached).
The work is `wizardlab.analysis.diversity.build_map`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from wizardlab.analysis import diversity
from wizardlab.errors import UserError
from wizardlab.jobs import current_job_id, job_run

HELP = "Embed instructions (all-MiniLM-L6-v2), project with UMAP, report diversity."


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--run", type=int, default=None, help="evolution run (default: the newest)")
    parser.add_argument("--reference", default=None, help="import this file as a reference set first "
                        "(any seed format, or JSONL/CSV with an instruction column)")
    parser.add_argument("--reference-name", default=None,
                        help="reference set to show (default: the --reference file's stem)")
    parser.add_argument("--include-eliminated", action="store_true",
                        help="map eliminated nodes too (default: the data set, seeds + kept after overrides)")
    parser.add_argument("--data-only", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--color", choices=["round", "operation", "status"], default="round",
                        help="colour of the PNG's points")
    parser.add_argument("--seed", type=int, default=0, help="UMAP random_state")
    parser.add_argument("--out", default=None, help="write the map: *.png (picture) or *.json (points, for the UI)")
    parser.add_argument("--embed-base-url", default=None,
                        help="an OpenAI-compatible /v1/embeddings endpoint instead of the embedded MiniLM "
                        "(e.g. text-embeddings-inference or vLLM on a GPU box); needs --embed-model")
    parser.add_argument("--embed-model", default=None, help="the model name at --embed-base-url")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store import Store

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.out and Path(args.out).suffix.lower() not in (".png", ".json"):
        raise UserError(f"--out {args.out}: use a .png or .json file name")
    embedder = _embedder(args)
    store = Store(args.db or Settings.from_env().db)
    target = args.run or store.latest_run_id("evolve")
    if target is None or store.get_run(target) is None:
        raise UserError(f"{store.path}: no evolution run {args.run or ''} to map".replace("  ", " "))
    reference = args.reference_name
    if args.reference:
        reference, n = diversity.import_reference(store, args.reference, args.reference_name)
        print(f"reference set {reference!r}: {n} instructions", file=sys.stderr)
    job_id = current_job_id() or store.create_run("embed", {"target_run": target, "out": args.out},
                                                  name=f"diversity map of run {target}")
    result = None
    with job_run(store, job_id) as job:
        result = _build(store, target, reference, args, job, embedder)
        job.progress({"phase": "done", "points": len(result.points), "out": args.out, **result.seconds}, force=True)
    if result is not None:
        _report(result, target, args)
    return 0


def _embedder(args):
    """The endpoint named by --embed-base-url/--embed-model, or None (the embedded MiniLM)."""
    from wizardlab.analysis.embeddings import EndpointEmbedder

    if not getattr(args, "embed_base_url", None):
        return None
    if not args.embed_model:
        raise UserError("--embed-base-url needs --embed-model (the model name the endpoint serves)")
    return EndpointEmbedder(args.embed_base_url, args.embed_model,
                            os.environ.get("WIZARDLAB_API_KEY") or os.environ.get("OPENAI_API_KEY"))


def _build(store, target: int, reference: str | None, args, job, embedder=None) -> diversity.DiversityMap:
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        job.progress({"phase": stage, "done": done, "total": total, "target_run": target}, force=stage != "embedding")
        if stage != "embedding":  # projecting: one UMAP call, nothing to count
            print(f"{stage} {total} points with UMAP ...", file=sys.stderr, flush=True)
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="text", file=sys.stderr, dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        return diversity.build_map(store, target, reference=reference, data_only=not args.include_eliminated,
                                   seed=args.seed, stop=job.stop, on_progress=progress, embedder=embedder)
    finally:
        for bar in bars.values():
            bar.close()


def _report(result: diversity.DiversityMap, target: int, args) -> None:
    e = result.embed
    print(f"run {target}: {len(result.points)} points; {e.texts} distinct texts, {e.cached} cached, "
          f"{e.embedded} embedded now; embed {result.seconds['embed']} s, {result.method} "
          f"{result.seconds['project']} s")
    print("dispersion (mean pairwise cosine distance, exact):")
    print(result.dispersion.to_string(index=False))
    if args.out:
        if args.out.lower().endswith(".png"):
            diversity.render_map_png(result.points, args.out, color_by=args.color, title=f"run {target}")
        else:
            result.save(args.out)
        print(f"map written to {args.out}")
