"""Read test sets and model-output files into plain rows, validated, with line numbers in errors.

Test sets (`load_testset`): WizardLM's (`idx`, `Skill`, `Difficulty`, `Instruction`), the
Vicuna benchmark's (`question_id`, `text`, `category`), or any seed-format file that
`wizardlab.evol.seeds.load_seeds` reads (the key is then the row number). Rows come out as
{prompt_key, text, skill, category, difficulty}.

Output files (`load_output_rows`): JSONL or CSV with a prompt id, optionally the prompt
text, a model name and the output; also the Vicuna answer files as they are
(`question_id`, `model_id`, `text`, where `text` is the answer).

This module reads files only; storing them is `wizardlab.evaluation`'s job.
"""

from __future__ import annotations

import re
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.io import Record, read_records

KEY_FIELDS = ("prompt_id", "question_id", "idx", "id", "prompt_key", "instance_id")
PROMPT_FIELDS = ("prompt", "instruction", "question")
MODEL_FIELDS = ("model", "model_id", "generator")
OUTPUT_FIELDS = ("output", "response", "completion", "answer")


GENERIC_STEMS = ("question", "questions", "prompts", "test", "testset")


def default_testset_name(path: str | Path, rows: list[dict] | None = None) -> str:
    """A readable test-set name: `vicuna80/question.jsonl` -> "vicuna80"; `wizardlm_testset.jsonl` ->
    "wizardlm_testset". A generic file name in a folder with no meaning (an upload's temporary
    folder, a hash) is named from its content: 80 Vicuna questions -> "vicuna80"."""
    path = Path(path)
    if path.stem.lower() not in GENERIC_STEMS:
        return path.stem
    folder = path.parent.name
    if folder and not _meaningless(folder):
        return folder
    rows = load_testset(path) if rows is None else rows
    first = rows[0] if rows else {}
    kind = "vicuna" if first.get("category") else "wizardlm" if first.get("skill") else path.stem.lower()
    return f"{kind}{len(rows)}"


def _meaningless(folder: str) -> bool:
    """A temporary or content-addressed folder name (Gradio's uploads: a 40-64 hex digest)."""
    return bool(re.fullmatch(r"[0-9a-f]{16,}", folder.lower()) or re.match(r"(tmp|gradio)", folder.lower()))


def load_testset(path: str | Path) -> list[dict]:
    """[{prompt_key, text, skill, category, difficulty}] from a WizardLM, Vicuna or seed-format file."""
    path = Path(path)
    records = list(read_records(path)) if path.suffix.lower() in (".jsonl", ".json", ".csv") else []
    first = records[0].row if records else {}
    if "Instruction" in first and "idx" in first:
        rows = [_wizardlm_row(r) for r in records]
    elif "question_id" in first and "text" in first:
        rows = [_vicuna_row(r) for r in records]
    else:
        rows = _seed_rows(path)
    keys = [r["prompt_key"] for r in rows]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise UserError(f"{path.name}: prompt id {dup!r} appears more than once")
    if not rows:
        raise UserError(f"{path.name}: no prompts found (empty file)")
    return rows


def _wizardlm_row(rec: Record) -> dict:
    difficulty = rec.row.get("Difficulty")
    try:
        difficulty = float(difficulty) if difficulty not in (None, "") else None
    except (TypeError, ValueError):
        raise UserError(f"{rec.where}: field 'Difficulty' is not a number: {difficulty!r}") from None
    return {"prompt_key": str(rec.require("idx", strip=False)), "text": str(rec.require("Instruction", strip=False)),
            "skill": rec.row.get("Skill") or None, "category": None, "difficulty": difficulty}


def _vicuna_row(rec: Record) -> dict:
    return {"prompt_key": str(rec.require("question_id", strip=False)), "text": str(rec.require("text", strip=False)),
            "skill": None, "category": rec.row.get("category") or None, "difficulty": None}


def _seed_rows(path: Path) -> list[dict]:
    from wizardlab.evol.seeds import load_seeds

    rows = []
    for i, seed in enumerate(load_seeds(path), 1):
        text = seed["instruction"] + (f"\n\n{seed['input']}" if seed.get("input") else "")
        rows.append({"prompt_key": str(i), "text": text, "skill": None, "category": None, "difficulty": None})
    return rows


def _first(row: dict, fields: tuple[str, ...]):
    for f in fields:
        if row.get(f) not in (None, ""):
            return f, row[f]
    return None, None


def load_output_rows(path: str | Path, model: str | None = None) -> list[dict]:
    """[{prompt_key, prompt (or None), model, output}] from an output file; `model` overrides the file's."""
    path = Path(path)
    out = []
    for rec in read_records(path):
        row, n = rec.row, rec.number
        key_field, key = _first(row, KEY_FIELDS)
        if key_field is None:
            raise UserError(f"{path.name} line {n}: missing field 'prompt_id' (or question_id/idx/id)")
        out_field, output = _first(row, OUTPUT_FIELDS)
        prompt_field, prompt = _first(row, PROMPT_FIELDS)
        if out_field is None and "text" in row:  # Vicuna answer files: `text` is the answer
            out_field, output = "text", row["text"]
        elif prompt_field is None and "text" in row:
            prompt = row["text"]
        if out_field is None or output is None:
            raise UserError(f"{path.name} line {n}: missing field 'output' (or response/completion/answer/text)")
        row_model = model or _first(row, MODEL_FIELDS)[1]
        out.append({"prompt_key": str(key), "prompt": prompt, "model": row_model, "output": str(output),
                    "line": n})
    if not out:
        raise UserError(f"{path.name}: no outputs found (empty file)")
    named = {r["model"] for r in out if r["model"]}
    fallback = named.pop() if len(named) == 1 else _model_from_filename(path)
    for r in out:  # rows without a model name take the file's only one (Vicuna files name it on some rows)
        r["model"] = str(r["model"] or fallback)
    return out


def _model_from_filename(path: Path) -> str:
    """`answer_alpaca-13b.jsonl` -> "alpaca-13b" (Vicuna files without a model_id)."""
    stem = path.stem
    return stem[len("answer_"):] if stem.startswith("answer_") else stem


def sibling_questions(path: str | Path) -> Path | None:
    """For a Vicuna answer file in `.../answer/`, the `../question.jsonl` it answers, if present."""
    candidate = Path(path).resolve().parent.parent / "question.jsonl"
    return candidate if candidate.is_file() else None
