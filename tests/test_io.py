"""The one reader: every format gives Records that know their file and line, errors name both."""

import json

import pytest

from wizardlab.errors import UserError
from wizardlab.io import csv_records, json_array, read_records


def _write(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_each_format_gives_rows_with_their_place(tmp_path):
    rows = [{"instruction": "Add", "n": 1}, {"instruction": "Sub", "n": 2}]
    jl = _write(tmp_path / "a.jsonl", "\n" + "\n\n".join(json.dumps(r) for r in rows) + "\n")
    assert [(r.row["n"], r.line, r.ref) for r in read_records(jl)] == [(1, 2, "a.jsonl:2"), (2, 4, "a.jsonl:4")]
    js = _write(tmp_path / "a.json", json.dumps({"data": rows}))
    assert [(r.row["n"], r.item, r.where) for r in read_records(js)] == [(1, 1, "a.json item 1"), (2, 2, "a.json item 2")]
    cs = _write(tmp_path / "a.csv", '\ufeffinstruction,n\nAdd,1\n"multi\nline",2\n')
    got = list(read_records(cs))
    assert [(r.row["instruction"], r.line) for r in got] == [("Add", 2), ("multi\nline", 3)]
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    assert [(r.row["n"], r.ref) for r in read_records(tmp_path / "a.parquet")] == [(1, "a.parquet#1"), (2, "a.parquet#2")]
    import datasets
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    assert [r.row["instruction"] for r in read_records(tmp_path / "saved")] == ["Add", "Sub"]


@pytest.mark.parametrize("name,content,message", [
    ("b.jsonl", '{"a": 1}\n{"a": \n', r"b.jsonl line 2: invalid JSON"),
    ("b.jsonl", '{"a": 1}\n[1]\n', r"b.jsonl line 2: expected a JSON object, got list"),
    ("b.jsonl", b'{"a": 1}\n{"a": "caf\xe9"}\n', r"b.jsonl line 2: not UTF-8 text \(byte 0xe9\)"),
    ("b.json", '[{"a": 1},\n 3]', r"b.json item 2: expected an object, got int"),
    ("b.json", '[{"a": 1},\n {"a" 2}]', r"b.json line 2: invalid JSON"),
    ("b.csv", "a,b\n1,2,3\n", r"b.csv line 2: more fields than the header's 2"),
    ("b.csv", "", r"b.csv: file is empty"),
    ("b.jsonl", "\n\n", r"b.jsonl: file is empty"),
    ("b.tsv", "a\tb\n", r"b.tsv: unknown format \.tsv"),
])
def test_bad_files_fail_in_one_line_naming_file_and_line(tmp_path, name, content, message):
    with pytest.raises(UserError, match=message) as err:
        list(read_records(_write(tmp_path / name, content)))
    assert "\n" not in str(err.value)


def test_require_names_the_field_and_csv_header_columns(tmp_path):
    rec = next(read_records(_write(tmp_path / "c.jsonl", '{"idx": 3, "text": "  "}\n')))
    assert rec.require("idx") == 3
    with pytest.raises(UserError, match=r"c.jsonl line 1: missing field 'text'"):
        rec.require("text")
    with pytest.raises(UserError, match=r"j.csv line 1: missing column 'label'"):
        list(csv_records("j.csv", "item,annotator\nq,a\n", ("item", "annotator", "label")))


def test_json_array_gives_the_line_each_element_starts_on():
    got = json_array("p.json", '[\n  {"a": 1},\n\n  {"a": 2}, 5\n]')
    assert [(r.row, r.line) for r in got] == [({"a": 1}, 2), ({"a": 2}, 4), (5, 4)]
    with pytest.raises(UserError, match=r"p.json line 1: expected a JSON array"):
        json_array("p.json", '{"a": 1}')
