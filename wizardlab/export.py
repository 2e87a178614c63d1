"""Export a run's instruction forest: the lineage file, or the training set.

- `jsonl`: the lineage file, one object per node (seeds, kept, eliminated, with the
  rules that fired and any override).
- `alpaca` (JSON list of instruction/input/output), `sharegpt` (conversations) and
  `hf` (a `datasets` directory, `save_to_disk`): the training set of the paper, i.e.
  the seeds plus every kept evolved instruction of every round, with responses.
Status is the effective one (a curator's override wins over the rules' verdict).
Files are written to a temporary name and renamed, so a failed export leaves nothing.
The command line is `pipeline.export`; the Data and Train tabs call the same function.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.store import Store

FORMATS = ("jsonl", "alpaca", "sharegpt", "hf")




def lineage_record(node: dict) -> dict:
    status = node["effective_status"]
    return {"id": node["id"], "run_id": node["run_id"], "parent_id": node["parent_id"] if node["round"] else None,
            "root_id": node["root_id"], "round": node["round"], "operation": node["operation"],
            "instruction": node["instruction"], "input": node["input"], "response": node["response"],
            "status": status, "fail_rules": [] if status in ("seed", "kept") else node["fail_rules"],
            "verdict": node["status"], "verdict_rules": node["fail_rules"], "overridden": status != node["status"],
            "error": node["error"], "difficulty": node["difficulty"]}


def training_records(store: Store, run_id: int) -> Iterator[dict]:
    for node in store.iter_nodes(run_id, training_only=True):
        if node["response"] is None or not node["response"].strip():
            continue  # a seed whose response could not be generated
        yield {"id": node["id"], "root_id": node["root_id"], "round": node["round"],
               "operation": node["operation"] or "seed", "instruction": node["instruction"],
               "input": node["input"], "output": node["response"]}


def _sharegpt(rec: dict) -> dict:
    prompt = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"] else "")
    return {"id": f"wizardlab-{rec['id']}", "conversations": [{"from": "human", "value": prompt},
                                                                {"from": "gpt", "value": rec["output"]}]}


def export_dataset(store: Store, run_id: int | None, out_path: str | Path, fmt: str) -> Path:
    """Write run `run_id` (default: newest evolution run) as `fmt`; returns the path written."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    run_id = run_id or store.latest_run_id("evolve")
    run = store.get_run(run_id) if run_id else None
    if run is None or run["kind"] != "evolve":
        raise UserError(f"no evolution run {run_id or ''} in {store.path}".replace("  ", " "))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        return _write_hf(store, run_id, out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            if fmt == "jsonl":
                for node in store.iter_nodes(run_id):
                    fh.write(json.dumps(lineage_record(node), ensure_ascii=False) + "\n")
            else:
                convert = _sharegpt if fmt == "sharegpt" else (
                    lambda r: {"instruction": r["instruction"], "input": r["input"], "output": r["output"]})
                _write_json_list(fh, (convert(r) for r in training_records(store, run_id)))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _write_json_list(fh, items) -> None:
    fh.write("[")
    for i, item in enumerate(items):
        fh.write(("," if i else "") + "\n  " + json.dumps(item, ensure_ascii=False))
    fh.write("\n]\n")


HF_FEATURES = {k: "int64" if k in ("id", "root_id", "round") else "string"
               for k in ("id", "root_id", "round", "operation", "instruction", "input", "output")}


def _hf_rows(db: str, run_id: int) -> Iterator[dict]:
    """The training records, read by the `datasets` writer in its own pass (a generator: constant memory)."""
    yield from training_records(Store(db), run_id)


def _write_hf(store: Store, run_id: int, out: Path) -> Path:
    import datasets

    features = datasets.Features({k: datasets.Value(v) for k, v in HF_FEATURES.items()})
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:  # a fresh cache dir: a generator's cached result is never reused for changed data
        if next(training_records(store, run_id), None) is None:  # a generator must yield at least one row
            ds = datasets.Dataset.from_dict({k: [] for k in HF_FEATURES}, features=features)
        else:
            ds = datasets.Dataset.from_generator(_hf_rows, features=features, cache_dir=str(tmp / "cache"),
                                                 gen_kwargs={"db": store.path, "run_id": run_id})
        ds.save_to_disk(str(tmp / "ds"))
        del ds
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp / "ds", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out