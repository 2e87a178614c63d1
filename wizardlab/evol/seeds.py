"""Read seed instructions from files or data sets into plain dicts.

Accepted: JSON (a list of objects), JSONL, CSV, Parquet, a `datasets` directory saved
with `save_to_disk`, or a hub data set name (needs network or a local HF cache).
Rows may be Alpaca-style (`instruction`, `input`, `output`), plain (`instruction`), or
Self-Instruct seeds (`instruction` + `instances[{input, output}]`; the first instance
is used). Field names are matched case-insensitively.

Every problem raises `UserError` with one line naming the file, the line and the field;
nothing is returned partially.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from wizardlab.errors import UserError

FORMATS = ("json", "jsonl", "csv", "parquet")


def load_seeds(source: str | Path, limit: int | None = None) -> list[dict]:
    """[{instruction, input, response (None when absent), source_ref}], validated."""
    return list(iter_seeds(source, limit))


def iter_seeds(source: str | Path, limit: int | None = None) -> Iterator[dict]:
    """Validated seeds one at a time; JSONL and CSV files are streamed, not read whole.

    A bad row raises UserError when it is reached, so callers that write must do so
    inside one transaction (or validate with a first pass).
    """
    path = Path(source)
    if path.is_dir():
        rows = iter(_from_dataset_dir(path))
    elif path.exists():
        rows = read_rows(path)
    elif "/" in str(source) and not str(source).startswith((".", "/")) and not path.suffix:
        rows = iter(_from_hub(str(source)))
    else:
        raise UserError(f"{source}: no such file")
    n = 0
    for row, where in rows:
        if limit and n >= limit:
            return
        yield _to_seed(row, where, path.name)
        n += 1
    if n == 0:
        raise UserError(f"{path.name}: no seed instructions found (empty file)")


def read_rows(path: Path) -> Iterator[tuple[dict, str]]:
    """(row, where) pairs of a JSON/JSONL/CSV/Parquet file, streamed; where = 'name:line' or 'name#item'."""
    fmt = _detect_format(path)
    if fmt == "parquet":
        yield from _parquet_rows(path)
        return
    if path.stat().st_size == 0 or (fmt != "json" and not any(line.strip() for line in _lines(path, first=True))):
        raise UserError(f"{path.name}: file is empty")
    if fmt == "jsonl":
        yield from _jsonl_rows(path.name, _lines(path))
    elif fmt == "json":
        text = _read_text(path)
        if not text.strip():
            raise UserError(f"{path.name}: file is empty")
        if text.lstrip().startswith("{") and "\n{" in text.strip():  # JSON Lines saved as .json
            yield from _jsonl_rows(path.name, iter(text.splitlines()))
        else:
            yield from _json_rows(path.name, text)
    else:
        yield from _csv_rows(path.name, _lines(path))


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    if suffix in ("tsv", "txt") or not suffix:
        raise UserError(f"{path.name}: unknown format {('.' + suffix) if suffix else '(no extension)'}; "
                        f"use .json, .jsonl, .csv or .parquet")
    raise UserError(f"{path.name}: unknown format .{suffix}; use .json, .jsonl, .csv or .parquet")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path.name} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                        f"save the file as UTF-8") from None


def _lines(path: Path, first: bool = False) -> Iterator[str]:
    """Decoded lines of a file, read one at a time; a bad byte names its line."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{path.name} line {lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                                f"save the file as UTF-8") from None
            yield line
            if first and line.strip():
                return


def _jsonl_rows(name: str, lines: Iterator[str]):
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{name} line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{name} line {lineno}: expected a JSON object, got {type(obj).__name__}")
        yield obj, f"{name}:{lineno}"


def _json_rows(name: str, text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{name} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None) if len(data) == 1 else None
    if not isinstance(data, list):
        raise UserError(f"{name}: expected a JSON list of objects")
    for i, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            raise UserError(f"{name} item {i}: expected an object, got {type(obj).__name__}")
        yield obj, f"{name}#{i}"


def _csv_rows(name: str, lines: Iterator[str]):
    reader = csv.DictReader(lines)
    if not reader.fieldnames:
        raise UserError(f"{name}: CSV has no header row")
    try:
        for row in reader:
            yield row, f"{name}:{reader.line_num}"
    except csv.Error as exc:
        raise UserError(f"{name} line {reader.line_num}: bad CSV ({exc})") from None


def _parquet_rows(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise UserError(f"{path.name}: not a readable Parquet file ({type(exc).__name__})") from None
    for i, row in enumerate(table.to_pylist(), 1):
        yield row, f"{path.name}#{i}"


def _from_dataset_dir(path: Path):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"{path}: not a saved `datasets` directory ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    return [(row, f"{path.name}#{i}") for i, row in enumerate(ds, 1)]


def _from_hub(name: str):
    import datasets

    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as exc:  # offline, unknown name, gated: all mean "cannot read it here"
        raise UserError(f"{name}: cannot load this hub data set here ({type(exc).__name__}); "
                        f"download it and pass a file or a saved directory") from None
    return [(row, f"{name}#{i}") for i, row in enumerate(ds, 1)]


def _field(row: dict, *names: str):
    lowered = {str(k).lower(): v for k, v in row.items()}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def _to_seed(row: dict, where: str, name: str) -> dict:
    loc = where.replace(f"{name}:", f"{name} line ").replace(f"{name}#", f"{name} item ")
    instruction = _field(row, "instruction")
    if instruction is None:
        raise UserError(f"{loc}: missing field 'instruction'")
    if not isinstance(instruction, str) or not instruction.strip():
        raise UserError(f"{loc}: field 'instruction' is empty")
    input_text, output = _field(row, "input"), _field(row, "output", "response")
    instances = _field(row, "instances")
    if instances:
        if not isinstance(instances, list) or not isinstance(instances[0], dict):
            raise UserError(f"{loc}: field 'instances' must be a list of {{input, output}} objects")
        input_text = instances[0].get("input", input_text)
        output = instances[0].get("output", output)
    for field_name, value in (("input", input_text), ("output", output)):
        if value is not None and not isinstance(value, str):
            raise UserError(f"{loc}: field '{field_name}' must be text")
    return {"instruction": instruction.strip(), "input": (input_text or "").strip(),
            "response": output if output and output.strip() else None, "source_ref": where}
