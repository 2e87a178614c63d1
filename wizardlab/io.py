"""The one reader for user files: JSON, JSON Lines, CSV, Parquet and saved `datasets` directories.

Every row comes out as a `Record` that knows its file and its line (text formats) or item
number (JSON arrays, Parquet, data sets), so every caller words its errors the same way:
`seeds.jsonl line 3: missing field 'instruction'`. Text is UTF-8 (a BOM is allowed); a bad
byte names its line. Seeds, test sets, model outputs and judgment files are all read here;
what a row means is the caller's business.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from wizardlab.errors import UserError

FORMATS = ("json", "jsonl", "csv", "parquet")


class Record(NamedTuple):
    """One row of a file and where it came from: `line` for JSONL/CSV, `item` (1-based) otherwise."""

    row: dict
    file: str
    line: int | None = None
    item: int | None = None

    @property
    def number(self) -> int:
        """The line or item number."""
        return self.line if self.line is not None else self.item

    @property
    def where(self) -> str:
        """'name line N' or 'name item N', the prefix of every error about this row."""
        return f"{self.file} line {self.line}" if self.line is not None else f"{self.file} item {self.item}"

    @property
    def ref(self) -> str:
        """'name:N' or 'name#N', the compact form stored as a seed's source reference."""
        return f"{self.file}:{self.line}" if self.line is not None else f"{self.file}#{self.item}"

    def get(self, *names: str, fold_case: bool = False, skip_empty: bool = True):
        """The value of the first of `names` present (and not empty, unless `skip_empty` is off); else None."""
        row = {str(k).lower(): v for k, v in self.row.items()} if fold_case else self.row
        for name in names:
            value = row.get(name)
            if value is not None and (value != "" or not skip_empty):
                return value
        return None

    def require(self, name: str, strip: bool = True):
        """row[name], stripped when text; UserError naming file, line and field when absent or empty."""
        value = self.row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise UserError(f"{self.where}: missing field {name!r}")
        return value.strip() if strip and isinstance(value, str) else value


# ---------------------------------------------------------------- text

def read_text(path: str | Path) -> str:
    """The whole file as text; UserError for a missing, empty, directory or non-UTF-8 file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a file") from None
    if not data.strip():
        raise UserError(f"{path.name}: file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path.name} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                        "save the file as UTF-8") from None


def iter_lines(path: Path) -> Iterator[str]:
    """Decoded lines, read one at a time (memory stays flat); a bad byte names its line."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{path.name} line {lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                                "save the file as UTF-8") from None


# ---------------------------------------------------------------- records

def read_records(source: str | Path) -> Iterator[Record]:
    """Every row of a file or saved data set, streamed for JSONL and CSV; errors name file and line."""
    path = Path(source)
    if path.is_dir():
        yield from _dataset_dir(path)
        return
    if not path.is_file():
        raise UserError(f"{source}: no such file")
    fmt = detect_format(path)
    if fmt == "parquet":
        yield from _parquet(path)
    elif fmt == "jsonl":
        yield from _nonempty(path, jsonl_records(path.name, iter_lines(path)))
    elif fmt == "json":
        text = read_text(path)
        if text.lstrip().startswith("{") and "\n{" in text.strip():  # JSON Lines saved as .json
            yield from jsonl_records(path.name, text.splitlines())
        else:
            yield from json_records(path.name, text)
    else:
        yield from _nonempty(path, csv_records(path.name, iter_lines(path)))


def detect_format(path: Path) -> str:
    """json / jsonl / csv / parquet from the file's extension; UserError for anything else."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    shown = f".{suffix}" if suffix else "(no extension)"
    raise UserError(f"{path.name}: unknown format {shown}; use .json, .jsonl, .csv or .parquet")


def _nonempty(path: Path, records: Iterator[Record]) -> Iterator[Record]:
    first = next(records, None)
    if first is None:
        raise UserError(f"{path.name}: file is empty")
    yield first
    yield from records


def jsonl_records(name: str, lines: Iterable[str]) -> Iterator[Record]:
    """One JSON object per non-blank line."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{name} line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{name} line {lineno}: expected a JSON object, got {type(obj).__name__}")
        yield Record(obj, name, line=lineno)


def json_records(name: str, text: str) -> Iterator[Record]:
    """A JSON list of objects (or an object holding one list, e.g. {"data": [...]})."""
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
        yield Record(obj, name, item=i)


def csv_records(name: str, lines: Iterable[str] | str, required: Iterable[str] = ()) -> Iterator[Record]:
    """CSV rows with the line each record starts on; the header must hold every `required` column and
    no record may have more fields than the header."""
    reader = csv.DictReader(io.StringIO(lines, newline="") if isinstance(lines, str) else lines)
    try:
        header = reader.fieldnames or []
        if not header:  # the csv module skips blank lines: no header means no content
            raise UserError(f"{name}: file is empty")
        missing = [c for c in required if c not in header]
        if missing:
            raise UserError(f"{name} line 1: missing column '{missing[0]}' (header: {', '.join(header)})")
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            if None in row:
                raise UserError(f"{name} line {line}: more fields than the header's {len(header)}")
            yield Record(row, name, line=line)
    except csv.Error as exc:
        raise UserError(f"{name} line {reader.line_num}: unreadable CSV ({exc})") from None


def json_array(name: str, text: str) -> list[Record]:
    """Each element of a top-level JSON array with the line it starts on (the element may be any JSON)."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        raise UserError(f"{name} line {text.count(chr(10), 0, pos) + 1}: expected a JSON array")
    out, pos = [], pos + 1
    try:
        while True:
            pos = _skip_space(text, pos)
            if text.startswith("]", pos):
                return out
            value, end = decoder.raw_decode(text, pos)
            out.append(Record(value, name, line=text.count("\n", 0, pos) + 1))
            pos = _skip_space(text, end)
            if text.startswith(",", pos):
                pos += 1
            elif not text.startswith("]", pos):
                raise json.JSONDecodeError("expected ',' or ']'", text, pos)
    except json.JSONDecodeError as exc:
        raise UserError(f"{name} line {exc.lineno}: not valid JSON ({exc.msg})") from None


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise UserError(f"{path.name}: not a readable Parquet file ({type(exc).__name__})") from None
    item = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            item += 1
            yield Record(row, path.name, item=item)
    if item == 0:
        raise UserError(f"{path.name}: file is empty")


def _dataset_dir(path: Path) -> Iterator[Record]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"{path}: not a saved `datasets` directory ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    for i, row in enumerate(ds, 1):
        yield Record(row, path.name, item=i)


def hub_records(name: str) -> Iterator[Record]:
    """Rows of a hub data set's train split (needs network or a local HF cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as exc:  # offline, unknown name, gated: all mean "cannot read it here"
        raise UserError(f"{name}: cannot load this hub data set here ({type(exc).__name__}); "
                        f"download it and pass a file or a saved directory") from None
    for i, row in enumerate(ds, 1):
        yield Record(row, name, item=i)
