"""`python -m pipeline import-judgments`: external pairwise judgments into a campaign.

    import-judgments FILE --campaign NAME [--format auto|csv|pandalm|llmfao|open-instruct] [--llm]
    import-judgments REVIEW.jsonl --campaign NAME --format vicuna-review [--judge gpt-4-review]
    import-judgments HUMAN.txt --campaign NAME --format faireval --chatgpt MODEL --vicuna MODEL
The first form creates the campaign, prompts, outputs and items as needed (one
transaction; `--llm` stores the file's annotators as LLM judges "llm:<name>"). The
Vicuna-80 GPT-4 reviews and FairEval's human labels go onto an existing campaign over
the Vicuna answers (see wizardlab.evaluation.external).
"""

from __future__ import annotations

import argparse

from wizardlab.evaluation.formats import FORMATS

HELP = "Import external human judgments (PandaLM, llmfao, open-instruct, CSV)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("file", help="judgments file")
    parser.add_argument("--campaign", required=True, help="campaign name (created when missing) or id")
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS, "vicuna-review", "faireval"))
    parser.add_argument("--llm", action="store_true", help="the file holds an LLM judge's verdicts")
    parser.add_argument("--judge", default="gpt-4-review", help="judge name for --format vicuna-review")
    parser.add_argument("--chatgpt", default=None, help="--format faireval: the ChatGPT output set's model")
    parser.add_argument("--vicuna", default=None, help="--format faireval: the Vicuna-13B output set's model")


def main(args) -> int:
    from wizardlab import evaluation
    from wizardlab.config import Settings
    from wizardlab.errors import UserError
    from wizardlab.evaluation import external
    from wizardlab.store import Store

    store = Store(Settings.from_env(db=args.db).db)
    if args.format == "vicuna-review":
        result = external.import_vicuna_reviews(store, evaluation.require_campaign(store, args.campaign), args.file,
                                                args.judge)
    elif args.format == "faireval":
        if not args.chatgpt or not args.vicuna:
            raise UserError("--format faireval needs --chatgpt MODEL and --vicuna MODEL")
        result = external.import_faireval(store, evaluation.require_campaign(store, args.campaign), args.file,
                                          chatgpt=args.chatgpt, vicuna=args.vicuna)
    else:
        result = external.import_judgments(store, args.file, args.campaign, fmt=args.format, llm=args.llm)
    print(", ".join(f"{k}: {v}" for k, v in result.items()))
    return 0
