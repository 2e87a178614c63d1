"""`python -m pipeline import-outputs`: model outputs from JSONL/CSV files into output sets.

Each file becomes one output set per model it holds (named "<test set>/<model>" unless
`--name` is given). Rows need a prompt id (prompt_id/question_id/idx/id), a model
(model/model_id, or `--model`, or the file name `answer_<model>.jsonl`) and the output
(output/response/completion/answer, or `text` as in the Vicuna answer files). Prompts are
matched by id to `--testset-file` (a Vicuna answer file finds `../question.jsonl` itself)
or to the stored test set `--testset`; otherwise the file must carry the prompt text.
`--testset-only` imports a test set without outputs. Each file is one transaction.
"""

from __future__ import annotations

import argparse

from wizardlab import evaluation

HELP = "Import model outputs (JSONL/CSV, Vicuna answer files) as an output set."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("files", nargs="*", help="output files (.jsonl, .json or .csv)")
    parser.add_argument("--testset", default=None, help="stored test set name the prompt ids refer to")
    parser.add_argument("--testset-file", default=None,
                        help="test set file (WizardLM, Vicuna question.jsonl or seed format) to match ids against")
    parser.add_argument("--model", default=None, help="model name (overrides the file's)")
    parser.add_argument("--name", default=None, help="output set name (default: <test set>/<model>)")
    parser.add_argument("--testset-only", action="store_true", help="only import --testset-file's prompts")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.errors import UserError
    from wizardlab.store import Store

    store = Store(Settings.from_env(db=args.db).db)
    if args.testset_only:
        if not args.testset_file:
            raise UserError("--testset-only needs --testset-file")
        name, n = evaluation.import_testset(store, args.testset_file, args.testset)
        print(f"test set {name!r}: {n} prompts")
        return 0
    if not args.files:
        raise UserError("give at least one output file")
    if args.name and len(args.files) > 1:
        raise UserError("--name works with one file only")
    for path in args.files:
        for s in evaluation.import_outputs(store, path, testset=args.testset, testset_file=args.testset_file,
                                           model=args.model, name=args.name):
            print(f"output set {s['id']} {s['name']!r}: {s['n_outputs']} outputs of {s['model']} on {s['testset']}")
    return 0
