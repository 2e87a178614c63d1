"""Read seed instructions from files or data sets into plain dicts.

Accepted: JSON (a list of objects), JSONL, CSV, Parquet, a `datasets` directory saved
with `save_to_disk`, or a hub data set name (needs network or a local HF cache).
Rows may be Alpaca-style (`instruction`, `input`, `output`), plain (`instruction`), or
Self-Instruct seeds (`instruction` + `instances[{input, output}]`; the first instance
is used). Field names are matched case-insensitively.

Reading is `wizardlab.io`; every problem raises `UserError` with one line naming the file,
the line and the field; nothing is returned partially.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.io import Record, hub_records, read_records


def load_seeds(source: str | Path, limit: int | None = None) -> list[dict]:
    """[{instruction, input, response (None when absent), source_ref}], validated."""
    return list(iter_seeds(source, limit))


def iter_seeds(source: str | Path, limit: int | None = None) -> Iterator[dict]:
    """Validated seeds one at a time; JSONL, CSV and Parquet files are streamed, not read whole.

    A bad row raises UserError when it is reached, so callers that write must do so
    inside one transaction (or validate with a first pass).
    """
    path = Path(source)
    if not path.exists() and "/" in str(source) and not str(source).startswith((".", "/")) and not path.suffix:
        records = hub_records(str(source))
    else:
        records = read_records(path)
    n = 0
    for record in records:
        if limit and n >= limit:
            return
        yield to_seed(record)
        n += 1
    if n == 0:
        raise UserError(f"{path.name}: no seed instructions found (empty file)")


def to_seed(record: Record) -> dict:
    """One seed from an Alpaca-style, plain or Self-Instruct row (field names in any case)."""
    instruction = record.get("instruction", fold_case=True, skip_empty=False)
    if instruction is None:
        raise UserError(f"{record.where}: missing field 'instruction'")
    if not isinstance(instruction, str) or not instruction.strip():
        raise UserError(f"{record.where}: field 'instruction' is empty")
    input_text = record.get("input", fold_case=True, skip_empty=False)
    output = record.get("output", "response", fold_case=True, skip_empty=False)
    instances = record.get("instances", fold_case=True)
    if instances:
        if not isinstance(instances, list) or not isinstance(instances[0], dict):
            raise UserError(f"{record.where}: field 'instances' must be a list of {{input, output}} objects")
        input_text = instances[0].get("input", input_text)
        output = instances[0].get("output", output)
    for field_name, value in (("input", input_text), ("output", output)):
        if value is not None and not isinstance(value, str):
            raise UserError(f"{record.where}: field '{field_name}' must be text")
    return {"instruction": instruction.strip(), "input": (input_text or "").strip(),
            "response": output if output and output.strip() else None, "source_ref": record.ref}
