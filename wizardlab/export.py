"""Export a run's instruction forest: the lineage file, or the training set.

- `jsonl`: the lineage file, one object per node (seeds, kept, eliminated, with the
  rules that fired and any override).
- `alpaca` (JSON list of instruction/input/output), `sharegpt` (conversations) and
  `hf` (a `datasets` directory, `save_to_disk`): the training set of the paper, i.e.
  the seeds plus every kept evolved instruction of every round, with responses.
Status is the effective one (a curator's override wins over the rules' verdict).
A `Selection` takes part of the training set, as WizardLM-7B was trained on 70K of the
250K: a uniform sample (`sample`, `seed`), or one stratified by round, a shuffled order,
and/or without responses cut off at max_tokens; the chosen ids are written next to the
export (`<file>.selection.json`) so the sample can be checked and replayed.
Files are written to a temporary name and renamed, so a failed export leaves nothing.
The command line is `pipeline.export`; the Data and Train tabs call the same function.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from wizardlab.errors import UserError
from wizardlab.store import Store

FORMATS = ("jsonl", "alpaca", "sharegpt", "hf")
STRATA = ("round",)


@dataclass(frozen=True)
class Selection:
    """Which part of the training set to export, and in which order."""

    sample: int | None = None  # how many records (None: all)
    seed: int = 0
    stratify: str | None = None  # None (uniform) or "round" (each round in proportion to its size)
    shuffle: bool = False  # shuffled order (else id order)
    drop_truncated: bool = False  # leave out responses cut off at max_tokens

    def __post_init__(self) -> None:
        if self.sample is not None and (int(self.sample) != self.sample or self.sample < 1):
            raise UserError(f"--sample must be a whole number of at least 1, got {self.sample}")
        if self.stratify not in (None, *STRATA):
            raise UserError(f"--stratify must be one of {', '.join(STRATA)}, got {self.stratify!r}")
        if self.stratify and self.sample is None:
            raise UserError("--stratify needs --sample N")

    @property
    def active(self) -> bool:
        return self.sample is not None or self.shuffle or self.drop_truncated


def choose_ids(population: list[tuple[int, int]], selection: Selection) -> list[int]:
    """Ids of (id, round) pairs chosen by `selection`, with its own `random.Random(seed)`."""
    rng = random.Random(selection.seed)
    ids = [i for i, _ in population]
    n = selection.sample
    if n is not None and n > len(ids):
        raise UserError(f"--sample {n} is more than the {len(ids)} records of the training set")
    if n is not None and selection.stratify == "round":
        strata = defaultdict(list)
        for i, rnd in population:
            strata[rnd].append(i)
        quotas = _proportional(n, {r: len(v) for r, v in strata.items()})
        ids = [i for r in sorted(strata) for i in rng.sample(strata[r], quotas[r])]
    elif n is not None:
        ids = rng.sample(ids, n)
    if selection.shuffle:
        rng.shuffle(ids)
    else:
        ids.sort()
    return ids


def _proportional(n: int, sizes: dict) -> dict:
    """Largest-remainder allocation of n over strata of the given sizes."""
    total = sum(sizes.values())
    exact = {k: n * v / total for k, v in sizes.items()}
    quotas = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (quotas[k] - exact[k], k))[: n - sum(quotas.values())]:
        quotas[k] += 1
    return quotas




def lineage_record(node: dict) -> dict:
    status = node["effective_status"]
    return {"id": node["id"], "run_id": node["run_id"], "parent_id": node["parent_id"] if node["round"] else None,
            "root_id": node["root_id"], "round": node["round"], "operation": node["operation"],
            "instruction": node["instruction"], "input": node["input"], "response": node["response"],
            "status": status, "fail_rules": [] if status in ("seed", "kept") else node["fail_rules"],
            "verdict": node["status"], "verdict_rules": node["fail_rules"], "overridden": status != node["status"],
            "error": node["error"], "difficulty": node["difficulty"],
            "finish_reason": node.get("finish_reason"), "truncated": node.get("finish_reason") == "length"}


LINEAGE_COLUMNS = ("id", "run_id", "parent_id", "root_id", "round", "operation", "instruction", "input",
                   "response", "status", "fail_rules", "error", "difficulty", "finish_reason")


def lineage_lines(store: Store, run_id: int) -> Iterator[bytes]:
    """The jsonl lineage file's lines (`lineage_record` of every node, id order), encoded: rows read as
    plain tuples of the columns it needs, each distinct `fail_rules` text parsed once."""
    rules: dict[str, list] = {}
    for *values, status in store.iter_node_rows(run_id, LINEAGE_COLUMNS):
        node = dict(zip(LINEAGE_COLUMNS, values), effective_status=status)
        text = node["fail_rules"] or "[]"
        node["fail_rules"] = rules[text] if text in rules else rules.setdefault(text, json.loads(text))
        yield orjson.dumps(lineage_record(node)) + b"\n"


TRAINING_COLUMNS = ("id", "root_id", "round", "operation", "instruction", "input", "response", "finish_reason")


def training_records(store: Store, run_id: int, ids: list[int] | None = None,
                     drop_truncated: bool = False) -> Iterator[dict]:
    """The training set in id order, or the records of `ids` in that order."""
    if ids is None:
        nodes = (dict(zip(TRAINING_COLUMNS, row)) for row in
                 store.iter_node_rows(run_id, TRAINING_COLUMNS, training_only=True))
    else:
        nodes = store.iter_nodes_by_ids(ids)
    for node in nodes:
        if node["response"] is None or not node["response"].strip():
            continue  # a seed whose response could not be generated
        if drop_truncated and node.get("finish_reason") == "length":
            continue
        yield {"id": node["id"], "root_id": node["root_id"], "round": node["round"],
               "operation": node["operation"] or "seed", "instruction": node["instruction"],
               "input": node["input"], "output": node["response"]}


def _sharegpt(rec: dict) -> dict:
    prompt = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"] else "")
    return {"id": f"wizardlab-{rec['id']}", "conversations": [{"from": "human", "value": prompt},
                                                                {"from": "gpt", "value": rec["output"]}]}


def export_dataset(store: Store, run_id: int | None, out_path: str | Path, fmt: str,
                   selection: Selection | None = None) -> Path:
    """Write run `run_id` (default: newest evolution run) as `fmt`; returns the path written.
    With an active `selection` (training formats only) the chosen ids go to `<out>.selection.json`."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    selection = selection or Selection()
    if selection.active and fmt == "jsonl":
        raise UserError("--sample, --shuffle and --drop-truncated apply to the training set formats, not jsonl")
    run_id = run_id or store.latest_run_id("evolve")
    run = store.get_run(run_id) if run_id else None
    if run is None or run["kind"] != "evolve":
        raise UserError(f"no evolution run {run_id or ''} in {store.path}".replace("  ", " "))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = _select(store, run_id, out, selection) if selection.active else None
    records = lambda: training_records(store, run_id, ids, selection.drop_truncated)  # noqa: E731
    if fmt == "hf":
        return _write_hf(store, run_id, out, ids, selection.drop_truncated)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            if fmt == "jsonl":
                fh.writelines(lineage_lines(store, run_id))
            else:
                convert = _sharegpt if fmt == "sharegpt" else (
                    lambda r: {"instruction": r["instruction"], "input": r["input"], "output": r["output"]})
                _write_json_list(fh, (convert(r) for r in records()))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def selection_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".selection.json")


def _select(store: Store, run_id: int, out: Path, selection: Selection) -> list[int]:
    population = store.training_ids(run_id, drop_truncated=selection.drop_truncated)
    ids = choose_ids(population, selection)
    record = {"run_id": run_id, **asdict(selection), "population": len(population), "chosen": len(ids), "ids": ids}
    path = selection_path(out)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return ids


def _write_json_list(fh, items) -> None:
    """A JSON list, one compact item per line (orjson: non-ASCII kept as is), to a binary file."""
    fh.write(b"[")
    for i, item in enumerate(items):
        fh.write((b",\n  " if i else b"\n  ") + orjson.dumps(item))
    fh.write(b"\n]\n")


HF_FEATURES = {k: "int64" if k in ("id", "root_id", "round") else "string"
               for k in ("id", "root_id", "round", "operation", "instruction", "input", "output")}


SHARD_BYTES = 500 << 20  # text per Arrow file, as `save_to_disk`'s default max_shard_size


def _write_hf(store: Store, run_id: int, out: Path, ids: list[int] | None = None, drop_truncated: bool = False) -> Path:
    """The training set as a `save_to_disk` directory, streamed: `datasets`' own ArrowWriter writes the
    records in batches straight into the shard files (nothing is held, mapped or copied afterwards), and the
    library writes the directory's metadata (features, state) from an empty dataset with those features."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    features = datasets.Features({k: datasets.Value(v) for k, v in HF_FEATURES.items()})
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        datasets.Dataset.from_dict({k: [] for k in HF_FEATURES}, features=features).save_to_disk(str(tmp / "ds"))
        shards: list[str] = []
        writer, size = None, 0
        for rec in training_records(store, run_id, ids, drop_truncated):
            if writer is None:
                shards.append(f"data-{len(shards):05d}.arrow")
                writer, size = ArrowWriter(features=features, path=str(tmp / "ds" / shards[-1])), 0
            writer.write(rec)
            size += len(rec["instruction"]) + len(rec["input"]) + len(rec["output"])
            if size >= SHARD_BYTES:
                writer.finalize()
                writer.close()
                writer = None
        if writer is None and not shards:  # no records: one empty file (a directory of no file won't load)
            shards.append("data-00000.arrow")
            writer = ArrowWriter(features=features, path=str(tmp / "ds" / shards[-1]))
        if writer is not None:
            writer.finalize()
            writer.close()
        names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
        for old, new in zip(shards, names):
            os.replace(tmp / "ds" / old, tmp / "ds" / new)
        state_path = tmp / "ds" / "state.json"
        state = json.loads(state_path.read_text(encoding="utf-8"))
        state["_data_files"] = [{"filename": name} for name in names]
        state_path.write_text(json.dumps(state, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp / "ds", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
