"""Read external pairwise human-judgment files into one common shape.

Every loader returns a list of dicts with the keys of FIELDS:
item, annotator, label, model_a, model_b, prompt, response_a, response_b (all strings).
`label` is ALWAYS in model terms: "a" = model_a's response is better, "b" = model_b's,
"tie"; model_a is the first model of the pair in a fixed order that does not depend on
which side a rater saw it on:

- pandalm: the order of `cmp_key` ("bloom-7b_llama-7b": a = bloom-7b = response1);
- llmfao: the pair's model_x / model_y (ids named through models.jsonl beside the file);
- open-instruct: alphabetical order of the two model names (the source swaps model_a and
  model_b between raters of the same instance, so its own order is not fixed);
- csv: the file's columns as given.

Formats (`detect_format` tells them apart from the file's content):
- "pandalm": PandaLM testset-v1.json, a JSON array; annotator1..N: 0 tie, 1 response1
  better, 2 response2 better.
- "llmfao": llmfao crowd-comparisons.csv (worker = annotator; winner left/right/tie with
  the `left`/`right` model names) or its gpt4-/gpt3-crowd-comparisons.csv verdict files
  (no worker column: the annotator is the file-name prefix, e.g. "gpt4"). Prompt and
  response texts come from pairs-crowd.jsonl beside the file when it is there.
- "open-instruct": Tulu-1 human evaluation CSV (evaluator, instance_index, model_a,
  model_b, preference in a-is-better, a-is-slightly-better, tie, b-is-slightly-better,
  b-is-better: collapsed to a/b/tie). An evaluator who judged an instance twice counts
  once, with the later answer (by timestamp).
- "csv": generic CSV with columns item, annotator, label and optional model_a, model_b,
  prompt, response_a, response_b. Labels a/b/tie (any case), "both_bad" (a tie) or one of
  the row's two model names. `keep_labels=True` keeps any label string as it is (for
  agreement on arbitrary labels).

Reading is `wizardlab.io`; bad input raises `UserError` with one line naming the file, the line
and the field.
This module does not write to the store and computes no statistics (see wizardlab.evaluation.stats).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.io import Record, csv_records, json_array, jsonl_records, read_text

FIELDS = ("item", "annotator", "label", "model_a", "model_b", "prompt", "response_a", "response_b")
FORMATS = ("csv", "pandalm", "llmfao", "open-instruct")
LABELS = ("a", "b", "tie")
PANDALM_LABELS = {0: "tie", 1: "a", 2: "b"}
OPEN_INSTRUCT_LABELS = {
    "a-is-better": "a", "a-is-slightly-better": "a", "tie": "tie",
    "b-is-slightly-better": "b", "b-is-better": "b",
}
CSV_REQUIRED = ("item", "annotator", "label")
LLMFAO_REQUIRED = ("id", "model_x", "model_y", "winner", "left", "right")
OPEN_INSTRUCT_REQUIRED = ("instance_index", "evaluator", "model_a", "model_b", "preference")


def judgment(item, annotator, label, model_a="", model_b="", prompt="", response_a="", response_b="") -> dict:
    """One judgment in the common shape (every value a string)."""
    values = (item, annotator, label, model_a, model_b, prompt, response_a, response_b)
    return {k: "" if v is None else str(v) for k, v in zip(FIELDS, values)}


# ---------------------------------------------------------------- detection

def detect_format(path: Path) -> str:
    """"pandalm", "llmfao", "open-instruct" or "csv", from the file's content.

    A JSON array whose first element has cmp_key and annotator1 is PandaLM; a CSV is told
    apart by its header. UserError when none fits.
    """
    path = Path(path)
    text = read_text(path)
    head = text.lstrip()[:1]
    if head in "[{":
        elements = json_array(path.name, text) if head == "[" else []
        first = elements[0].row if elements else None
        if isinstance(first, dict) and "cmp_key" in first and "annotator1" in first:
            return "pandalm"
        raise UserError(f"{path.name}: unknown judgments format (JSON, but not PandaLM's "
                        "array of items with cmp_key and annotator1..3)")
    header = set(next(csv.reader(io.StringIO(text, newline="")), []))
    if set(LLMFAO_REQUIRED) <= header:
        return "llmfao"
    if set(OPEN_INSTRUCT_REQUIRED) <= header:
        return "open-instruct"
    if set(CSV_REQUIRED) <= header:
        return "csv"
    raise UserError(f"{path.name} line 1: unknown judgments format; a CSV needs the columns "
                    "item, annotator, label (or llmfao's / open-instruct's)")


def load_judgments(path: Path, fmt: str = "auto", keep_labels: bool = False) -> list[dict]:
    """Judgments of `path` in the common shape (see the module docstring).

    fmt: "auto" (see `detect_format`) or one of FORMATS. keep_labels (generic CSV only):
    keep the label strings as written instead of requiring a/b/tie.
    """
    path = Path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    loaders = {"csv": lambda p: load_csv(p, keep_labels), "pandalm": load_pandalm,
               "llmfao": load_llmfao, "open-instruct": load_open_instruct}
    if fmt not in loaders:
        raise UserError(f"{path.name}: unknown format {fmt!r}; choose auto, {', '.join(FORMATS)}")
    rows = loaders[fmt](path)
    if not rows:
        raise UserError(f"{path.name}: no judgments in the file")
    return rows


def to_records(judgments: Iterable[dict]) -> list[tuple[str, str, str]]:
    """(item, annotator, label) triples for `wizardlab.evaluation.stats.agreement`."""
    return [(j["item"], j["annotator"], j["label"]) for j in judgments]


def write_csv(judgments: Iterable[dict], path: Path) -> Path:
    """Write judgments as the generic CSV (columns FIELDS); returns the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(judgments)
    return path


def _no_duplicate(path: Path, line: int, seen: dict, key: tuple) -> None:
    """UserError when annotator key[1] already judged item key[0] (seen: key -> line)."""
    if key in seen:
        raise UserError(f"{Path(path).name} line {line}: annotator '{key[1]}' already judged "
                        f"item '{key[0]}' on line {seen[key]}")
    seen[key] = line


# ---------------------------------------------------------------- generic CSV

def csv_label(path: Path, line: int, raw: str, model_a: str, model_b: str) -> str:
    """a/b/tie from a generic-CSV label: a, b, tie, both_bad (tie), or a model name."""
    low = raw.lower()
    if low in LABELS:
        return low
    if low == "both_bad":
        return "tie"
    if raw and raw in (model_a, model_b) and model_a != model_b:
        return "a" if raw == model_a else "b"
    raise UserError(f"{Path(path).name} line {line}: field 'label' is {raw!r}, expected a, b or tie"
                    " (or a model name of the row)")


def load_csv(path: Path, keep_labels: bool = False) -> list[dict]:
    """The generic CSV: item, annotator, label [, model_a, model_b, prompt, response_a, response_b]."""
    path = Path(path)
    out, seen = [], {}
    for rec in csv_records(path.name, read_text(path), CSV_REQUIRED):
        item, annotator, raw = rec.require("item"), rec.require("annotator"), rec.require("label")
        extra = {k: rec.row.get(k) or "" for k in FIELDS[3:]}
        extra["model_a"], extra["model_b"] = extra["model_a"].strip(), extra["model_b"].strip()
        label = raw if keep_labels else csv_label(path, rec.line, raw, extra["model_a"], extra["model_b"])
        _no_duplicate(path, rec.line, seen, (item, annotator))
        out.append(judgment(item, annotator, label, **extra))
    return out


# ---------------------------------------------------------------- PandaLM

def load_pandalm(path: Path) -> list[dict]:
    """PandaLM testset JSON: one judgment per item and annotatorN key."""
    path = Path(path)
    out = []
    for rec in json_array(path.name, read_text(path)):
        if not isinstance(rec.row, dict):
            raise UserError(f"{rec.where}: expected an object with cmp_key and annotator1..3")
        out.extend(_pandalm_entry(path, rec.line, rec.row))
    return out


def _pandalm_entry(path: Path, line: int, entry: dict) -> list[dict]:
    for key in ("idx", "cmp_key", "response1", "response2"):
        if entry.get(key) is None:
            raise UserError(f"{path.name} line {line}: missing field '{key}'")
    models = str(entry["cmp_key"]).split("_")
    if len(models) != 2 or not all(models):
        raise UserError(f"{path.name} line {line}: field 'cmp_key' is {entry['cmp_key']!r}, "
                        "expected 'modelA_modelB'")
    annotators = sorted(k for k in entry if k.startswith("annotator"))
    if not annotators:
        raise UserError(f"{path.name} line {line}: missing field 'annotator1'")
    prompt = "\n\n".join(p for p in (entry.get("instruction"), entry.get("input")) if p)
    out = []
    for key in annotators:
        vote = entry[key]
        if isinstance(vote, bool) or vote not in PANDALM_LABELS:
            raise UserError(f"{path.name} line {line}: field '{key}' is {vote!r}, expected 0, 1 or 2")
        out.append(judgment(entry["idx"], key, PANDALM_LABELS[vote], models[0], models[1], prompt,
                            entry["response1"], entry["response2"]))
    return out


# ---------------------------------------------------------------- llmfao

def _jsonl_beside(path: Path, name: str) -> list[dict]:
    """Records of a JSONL file next to `path` ([] when absent)."""
    other = Path(path).with_name(name)
    if not other.exists():
        return []
    return [rec.row for rec in jsonl_records(other.name, read_text(other).splitlines())]


def _llmfao_model_names(path: Path, rows: list[tuple[int, dict]]) -> dict[str, str]:
    """Model id -> name: models.jsonl beside the file, else inferred from the rows."""
    names = {str(m["id"]): m["name"] for m in _jsonl_beside(path, "models.jsonl") if "id" in m}
    return names or _infer_model_names(rows)


def _infer_model_names(rows: list[tuple[int, dict]]) -> dict[str, str]:
    """Model id -> name from the rows alone: an id's name is the one name common to the
    left/right names of all its rows; then, where one side of a row is known, the other
    side is the other shown name (repeated until nothing changes). Ids it cannot tell
    apart are left out (their rows then fail with a clear error)."""
    candidates: dict[str, set] = {}
    for _, row in rows:
        shown = {row["left"], row["right"]}
        for key in ("model_x", "model_y"):
            candidates[row[key]] = candidates.get(row[key], shown) & shown
    names = {mid: next(iter(c)) for mid, c in candidates.items() if len(c) == 1}
    changed = True
    while changed:
        changed = False
        for _, row in rows:
            shown = {row["left"], row["right"]}
            for known, other in (("model_x", "model_y"), ("model_y", "model_x")):
                rest = shown - {names.get(row[known])}
                if row[known] in names and row[other] not in names and len(rest) == 1:
                    names[row[other]] = rest.pop()
                    changed = True
    return names


def load_llmfao(path: Path) -> list[dict]:
    """llmfao crowd votes or GPT verdicts; left/right converted to model_x (a) / model_y (b)."""
    path = Path(path)
    records = list(csv_records(path.name, read_text(path), LLMFAO_REQUIRED))
    for rec in records:
        for key in LLMFAO_REQUIRED:
            rec.row[key] = rec.require(key)
    rows = [(rec.line, rec.row) for rec in records]
    names = _llmfao_model_names(path, rows)
    pairs = {str(p["id"]): p for p in _jsonl_beside(path, "pairs-crowd.jsonl")}
    default_annotator = path.stem.split("-")[0]
    out, seen = [], {}
    for rec in records:
        line, row = rec.line, rec.row
        annotator = rec.require("worker") if "worker" in row else default_annotator
        label = _llmfao_label(path, line, row, names)
        _no_duplicate(path, line, seen, (row["id"], annotator))
        pair = pairs.get(row["id"], {})
        out.append(judgment(row["id"], annotator, label, names[row["model_x"]], names[row["model_y"]],
                            pair.get("text", ""), pair.get("result_x", ""), pair.get("result_y", "")))
    return out


def _llmfao_label(path: Path, line: int, row: dict, names: dict[str, str]) -> str:
    winner = row["winner"].lower()
    if winner not in ("left", "right", "tie"):
        raise UserError(f"{path.name} line {line}: field 'winner' is {row['winner']!r}, expected left, right or tie")
    x, y = names.get(row["model_x"]), names.get(row["model_y"])
    if x is None or y is None or {x, y} != {row["left"], row["right"]}:
        raise UserError(f"{path.name} line {line}: field 'left' is {row['left']!r}, which is neither model_x "
                        f"nor model_y (put llmfao's models.jsonl beside the file)")
    if winner == "tie":
        return "tie"
    return "a" if row[winner] == x else "b"


# ---------------------------------------------------------------- open-instruct (Tulu 1)

def load_open_instruct(path: Path) -> list[dict]:
    """Tulu-1 human evaluation CSV; 5-level preference collapsed to a/b/tie in the
    alphabetical model order; a repeated (instance, evaluator) keeps the later answer."""
    path = Path(path)
    latest: dict[tuple, tuple[str, dict]] = {}
    for rec in csv_records(path.name, read_text(path), OPEN_INSTRUCT_REQUIRED):
        key = (rec.require("instance_index"), rec.require("evaluator"))
        entry = _open_instruct_row(rec)
        stamp = rec.row.get("timestamp") or ""
        if key not in latest or stamp >= latest[key][0]:
            latest[key] = (stamp, entry)
    return [entry for _, entry in latest.values()]


def _open_instruct_row(rec: Record) -> dict:
    pref = rec.require("preference").lower()
    if pref not in OPEN_INSTRUCT_LABELS:
        raise UserError(f"{rec.where}: field 'preference' is {pref!r}, expected one of "
                        f"{', '.join(OPEN_INSTRUCT_LABELS)}")
    ma, mb = rec.require("model_a"), rec.require("model_b")
    row = rec.row
    ra, rb = row.get("completion_a") or "", row.get("completion_b") or ""
    label = OPEN_INSTRUCT_LABELS[pref]
    if mb < ma:  # put the pair in alphabetical order and the label with it
        ma, mb, ra, rb = mb, ma, rb, ra
        label = {"a": "b", "b": "a"}.get(label, label)
    return judgment(rec.require("instance_index"), rec.require("evaluator"),
                    label, ma, mb, row.get("prompt") or "", ra, rb)
