"""Seed loading: every accepted format, and one clear line for every kind of bad input."""

import json

import pytest

from wizardlab.errors import UserError
from wizardlab.evol.seeds import load_seeds


def test_self_instruct_seed_file(shared_data):
    seeds = load_seeds(shared_data / "seeds" / "alpaca_seed_tasks.jsonl")
    assert len(seeds) == 175
    with_input = [s for s in seeds if s["input"]]
    assert with_input and all(s["response"] for s in seeds)
    assert seeds[0]["source_ref"] == "alpaca_seed_tasks.jsonl:1"


def test_limit(shared_data):
    assert len(load_seeds(shared_data / "seeds" / "alpaca_seed_tasks.jsonl", limit=5)) == 5


def test_alpaca_json_list(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"instruction": "Add", "input": "1+1", "output": "2"}, {"instruction": "Hi"}]))
    seeds = load_seeds(p)
    assert seeds[0] == {"instruction": "Add", "input": "1+1", "response": "2", "source_ref": "a.json#1"}
    assert seeds[1]["response"] is None and seeds[1]["input"] == ""


def test_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "s.csv").write_text("Instruction,input\nWrite a haiku,\n\"Sum, please\",3 4\n")
    seeds = load_seeds(tmp_path / "s.csv")
    assert [s["instruction"] for s in seeds] == ["Write a haiku", "Sum, please"] and seeds[1]["input"] == "3 4"
    pq.write_table(pa.table({"instruction": ["a", "b"], "output": ["x", None]}), tmp_path / "s.parquet")
    assert [s["response"] for s in load_seeds(tmp_path / "s.parquet")] == ["x", None]


def test_saved_datasets_directory(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"instruction": "q1", "output": "a1"}]).save_to_disk(str(tmp_path / "ds"))
    assert load_seeds(tmp_path / "ds")[0]["response"] == "a1"


@pytest.mark.parametrize("content,message", [
    ('{"instruction": "ok"}\n{"instruction": "bad",\n', "bad.jsonl line 2: invalid JSON"),
    ('{"instruction": "ok"}\n{"input": "x"}\n', "bad.jsonl line 2: missing field 'instruction'"),
    ('{"instruction": "  "}\n', "bad.jsonl line 1: field 'instruction' is empty"),
    ("", "bad.jsonl: file is empty"),
    ("[1, 2]\n", "bad.jsonl line 1: expected a JSON object"),
    ('{"instruction": "x", "instances": "nope"}\n', "bad.jsonl line 1: field 'instances'"),
])
def test_bad_jsonl(tmp_path, content, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(UserError) as err:
        load_seeds(p)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_wrong_encoding_names_line(tmp_path):
    p = tmp_path / "latin.jsonl"
    p.write_bytes('{"instruction": "ok"}\n{"instruction": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.jsonl line 2: not UTF-8"):
        load_seeds(p)


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "s.xml").write_text("<a/>")
    with pytest.raises(UserError, match="unknown format .xml"):
        load_seeds(tmp_path / "s.xml")
    with pytest.raises(UserError, match="no such file"):
        load_seeds(tmp_path / "nope.jsonl")


def test_csv_missing_column(tmp_path):
    (tmp_path / "s.csv").write_text("prompt\nhello\n")
    with pytest.raises(UserError, match=r"s.csv line 2: missing field 'instruction'"):
        load_seeds(tmp_path / "s.csv")
