"""Test sets and output sets into the store: `import_testset`, `import_outputs`.

Each import is one transaction; bad input is one `UserError` line naming file, line and
field, and nothing is half-written. Reading the files is `wizardlab.evaluation.testsets`.
"""

from __future__ import annotations

from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.evaluation.campaigns import MAX_NAME, check_length
from wizardlab.evaluation.testsets import default_testset_name, load_output_rows, load_testset, sibling_questions


def import_testset(store, path: str | Path, name: str | None = None) -> tuple[str, int]:
    """Load a WizardLM / Vicuna / seed-format file into `prompts`; returns (test set name, count)."""
    rows = load_testset(path)
    name = name or default_testset_name(path, rows)
    store.upsert_prompts(name, rows)
    return name, len(rows)


def import_outputs(store, path: str | Path, *, testset: str | None = None, testset_file: str | Path | None = None,
                   model: str | None = None, name: str | None = None) -> list[dict]:
    """Import an output file as one output set per model; returns the created sets.

    Prompts are matched by id to `testset_file` (a Vicuna answer file finds its
    `../question.jsonl` by itself), else to the stored test set `testset`; without either
    the file must carry the prompt text and becomes its own test set.
    """
    return import_outputs_files(store, [path], testset=testset, testset_file=testset_file, model=model, name=name)


def import_outputs_files(store, paths: list, *, testset: str | None = None, testset_file: str | Path | None = None,
                         model: str | None = None, name: str | None = None) -> list[dict]:
    """Several output files (e.g. Vicuna `answer_*.jsonl`) against one test set, in one transaction."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no output file given")
    rows_of = [(path, load_output_rows(path, model)) for path in paths]
    testset_file = testset_file or (None if testset else sibling_questions(paths[0]))
    with store.tx() as conn:
        keys: dict = {}
        created = []
        for path, rows in rows_of:
            ts, key_to_id = keys.get(testset_file) or _prompt_ids(store, conn, path, rows, testset, testset_file)
            if testset_file:
                keys[testset_file] = (ts, key_to_id)
            created += _create_sets(store, conn, path, rows, ts, key_to_id, name)
    return created


def _create_sets(store, conn, path: Path, rows: list[dict], testset: str, key_to_id: dict, name: str | None):
    by_model: dict[str, list] = {}
    for r in rows:
        if r["prompt_key"] not in key_to_id:
            raise UserError(f"{path.name} line {r['line']}: prompt id {r['prompt_key']!r} is not in test set "
                            f"{testset!r}")
        by_model.setdefault(r["model"], []).append((key_to_id[r["prompt_key"]], r["output"]))
    if name and len(by_model) > 1:
        raise UserError(f"{path.name}: holds {len(by_model)} models; a set name needs a file with one model")
    created = []
    for m, outputs in by_model.items():
        set_name = check_length("output set name", name or f"{testset}/{m}", MAX_NAME)
        if store.output_set(set_name) is not None:
            raise UserError(f"{path.name}: an output set named {set_name!r} exists already; give another name")
        sid = store.create_output_set(set_name, m, testset, "import", outputs=outputs, conn=conn)
        created.append({"id": sid, "name": set_name, "model": m, "testset": testset, "n_outputs": len(outputs)})
    return created


def _prompt_ids(store, conn, path: Path, rows: list[dict], testset: str | None, testset_file) -> tuple[str, dict]:
    if testset_file:
        prompts = load_testset(testset_file)
        testset = testset or default_testset_name(testset_file, prompts)
        return testset, store.upsert_prompts(testset, prompts, conn=conn)
    if testset and store.prompts_of(testset):
        return testset, {p["prompt_key"]: p["id"] for p in store.prompts_of(testset)}
    testset = testset or path.stem
    missing = next((r for r in rows if not r["prompt"]), None)
    if missing:
        raise UserError(f"{path.name} line {missing['line']}: no prompt text; give the test set file its ids refer "
                        f"to (for Vicuna answers: question.jsonl)")
    unique = {r["prompt_key"]: {"prompt_key": r["prompt_key"], "text": r["prompt"]} for r in rows}
    return testset, store.upsert_prompts(testset, unique.values(), conn=conn)
