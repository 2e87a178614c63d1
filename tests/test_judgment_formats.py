"""wizardlab.evaluation.formats: the real PandaLM / llmfao / open-instruct files, small
hand-made files for the cases the real data does not show, and every bad-input case."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from wizardlab.evaluation import formats as jf
from wizardlab.errors import UserError

HJ = "human_judgments"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- real files

def test_pandalm_real_file(shared_data):
    path = shared_data / HJ / "pandalm" / "testset-v1.json"
    raw = json.loads(path.read_text())
    got = jf.load_judgments(path)
    assert jf.detect_format(path) == "pandalm"
    assert len(got) == 3 * len(raw) == 2997
    assert all(tuple(j) == jf.FIELDS for j in got)
    by_key = {(j["item"], j["annotator"]): j for j in got}
    vote = {0: "tie", 1: "a", 2: "b"}
    for entry in raw[::97]:
        for k in (1, 2, 3):
            j = by_key[str(entry["idx"]), f"annotator{k}"]
            assert j["label"] == vote[entry[f"annotator{k}"]]
            assert (j["model_a"], j["model_b"]) == tuple(entry["cmp_key"].split("_"))
            assert j["response_a"] == entry["response1"] and j["response_b"] == entry["response2"]
            assert j["prompt"].startswith(entry["instruction"]) and entry["input"] in j["prompt"]


def test_llmfao_real_files(shared_data, tmp_path):
    folder = shared_data / HJ / "llmfao"
    crowd = jf.load_judgments(folder / "crowd-comparisons.csv")
    assert jf.detect_format(folder / "crowd-comparisons.csv") == "llmfao"
    assert len(crowd) == 8931 and len({j["annotator"] for j in crowd}) == 124
    with (folder / "crowd-comparisons.csv").open(newline="") as fh:
        raw = list(csv.DictReader(fh))
    names = {str(m["id"]): m["name"] for m in map(json.loads, (folder / "models.jsonl").open())}
    for row, j in zip(raw, crowd):
        assert (j["item"], j["annotator"]) == (row["id"], row["worker"])
        assert (j["model_a"], j["model_b"]) == (names[row["model_x"]], names[row["model_y"]])
        shown_winner = {"left": row["left"], "right": row["right"]}.get(row["winner"])
        assert j["label"] == {None: "tie", j["model_a"]: "a", j["model_b"]: "b"}[shown_winner]
    assert crowd[0]["prompt"].startswith("Argue for and against") and crowd[0]["response_a"]
    alone = write(tmp_path / "crowd-comparisons.csv", (folder / "crowd-comparisons.csv").read_bytes())
    inferred = jf.load_judgments(alone)  # no models.jsonl beside it: names inferred from the rows
    assert [(j["model_a"], j["model_b"], j["label"]) for j in inferred] == [
        (j["model_a"], j["model_b"], j["label"]) for j in crowd]
    gpt4 = jf.load_judgments(folder / "gpt4-crowd-comparisons.csv")
    assert len(gpt4) == 2139 and {j["annotator"] for j in gpt4} == {"gpt4"}
    assert {j["item"] for j in gpt4} == {j["item"] for j in crowd}


def test_open_instruct_real_file(shared_data):
    path = shared_data / HJ / "open_instruct_tulu1" / "open-instruct_eval_annotations_tulu_1.csv"
    assert jf.detect_format(path) == "open-instruct"
    got = jf.load_judgments(path)
    with path.open(newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert len(got) == len({(r["instance_index"], r["evaluator"]) for r in raw})
    assert all(j["model_a"] < j["model_b"] for j in got)
    assert set(Counter(j["label"] for j in got)) == {"a", "b", "tie"}
    # each item's pair is the same for all its raters, whatever side the source put them on
    pairs = {}
    for j in got:
        assert pairs.setdefault(j["item"], (j["model_a"], j["model_b"])) == (j["model_a"], j["model_b"])


# ---------------------------------------------------------------- small files

OI_HEADER = "instance_index,instance_id,prompt,model_a,model_b,completion_a,completion_b,preference,evaluator,timestamp\n"


def test_open_instruct_flips_to_alphabetical_order_and_keeps_latest(tmp_path):
    path = write(tmp_path / "oi.csv", OI_HEADER
                 + "0,t1,P,tulu,chatgpt,from tulu,from chatgpt,a-is-slightly-better,ann,2023-05-01 10:00:00\n"
                 + "0,t1,P,chatgpt,tulu,from chatgpt,from tulu,a-is-better,bob,2023-05-01 10:00:00\n"
                 + "1,t2,Q,chatgpt,tulu,x,y,b-is-better,ann,2023-05-02 10:00:00\n"
                 + "1,t2,Q,chatgpt,tulu,x,y,tie,ann,2023-05-01 09:00:00\n")
    got = {(j["item"], j["annotator"]): j for j in jf.load_judgments(path)}
    assert len(got) == 3
    ann0 = got["0", "ann"]
    assert (ann0["model_a"], ann0["label"], ann0["response_a"]) == ("chatgpt", "b", "from chatgpt")
    assert got["0", "bob"]["label"] == "a"
    assert got["1", "ann"]["label"] == "b"  # the later of the two answers


def llmfao_csv(rows: list[str], worker=True) -> str:
    header = "id,prompt,model_x,model_y," + ("worker," if worker else "") + "winner,left,right\n"
    return header + "".join(r + "\n" for r in rows)


def test_llmfao_right_side_and_names_without_models_file(tmp_path):
    # model_x shown on the right: "left" wins means model_y (b) wins.
    path = write(tmp_path / "crowd-comparisons.csv", llmfao_csv([
        "0,1,10,20,w1,left,Beta,Alpha", "0,1,10,20,w2,right,Beta,Alpha",
        "1,1,10,30,w1,tie,Alpha,Gamma", "2,1,20,30,w1,left,Beta,Gamma"]))
    got = jf.load_judgments(path, fmt="llmfao")
    assert [(j["model_a"], j["model_b"], j["label"]) for j in got] == [
        ("Alpha", "Beta", "b"), ("Alpha", "Beta", "a"), ("Alpha", "Gamma", "tie"), ("Beta", "Gamma", "a")]
    write(tmp_path / "models.jsonl", '{"id": 10, "name": "Delta"}\n{"id": 20, "name": "Alpha"}\n{"id": 30, "name": "Gamma"}\n')
    with pytest.raises(UserError, match=r"crowd-comparisons.csv line 2: field 'left'"):
        jf.load_judgments(path)


def test_gpt_verdict_file_annotator_is_file_prefix(tmp_path):
    path = write(tmp_path / "gpt9-crowd-comparisons.csv", llmfao_csv(
        ["0,1,10,20,left,Alpha,Beta", "1,1,10,30,right,Alpha,Gamma"], worker=False))
    got = jf.load_judgments(path)
    assert [(j["annotator"], j["label"]) for j in got] == [("gpt9", "a"), ("gpt9", "b")]


def test_generic_csv_labels_roundtrip_and_extra_columns(tmp_path):
    path = write(tmp_path / "j.csv", "item,annotator,label,model_a,model_b,prompt\n"
                 "q1,ann,A,m1,m2,hello\nq1,bob,m2,m1,m2,hello\nq2,ann,Tie,,,\nq2,bob,both_bad,,,\n")
    got = jf.load_judgments(path)
    assert jf.detect_format(path) == "csv"
    assert [j["label"] for j in got] == ["a", "b", "tie", "tie"]
    assert got[0]["prompt"] == "hello" and got[2]["model_a"] == ""
    again = jf.load_judgments(jf.write_csv(got, tmp_path / "out.csv"))
    assert again == got
    kept = jf.load_judgments(path, keep_labels=True)
    assert [j["label"] for j in kept] == ["A", "m2", "Tie", "both_bad"]
    assert jf.to_records(got)[0] == ("q1", "ann", "a")


def test_pandalm_roundtrip_through_generic_csv(shared_data, tmp_path):
    got = jf.load_judgments(shared_data / HJ / "pandalm" / "testset-v1.json")
    assert jf.load_judgments(jf.write_csv(got, tmp_path / "p.csv"), fmt="csv") == got


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("content, message", [
    ("item,annotator,label\nq1,a1,a\nq1,a2,\n", r"j.csv line 3: missing field 'label'"),
    ("item,annotator\nq1,a1\n", r"j.csv line 1: unknown judgments format"),
    ("item,annotator,label\nq1,a1,maybe\n", r"j.csv line 2: field 'label' is 'maybe'"),
    ("item,annotator,label\nq1,a1,a\nq2,a1,b\nq1,a1,b\n", r"j.csv line 4: annotator 'a1' already judged item 'q1' on line 2"),
    ("item,annotator,label\nq1,a1,a,extra\n", r"j.csv line 2: more fields than the header"),
    ('item,annotator,label\n"multi\nline",a1,a\nq2,,b\n', r"j.csv line 4: missing field 'annotator'"),
    ("", r"j.csv: file is empty"),
    ("  \n\n", r"j.csv: file is empty"),
    ("item,annotator,label\n", r"j.csv: no judgments in the file"),
    (b"item,annotator,label\nq1,caf\xe9,a\n", r"j.csv line 2: not UTF-8 text \(byte 0xe9\)"),
    ('{"foo": 1}', r"j.csv: unknown judgments format \(JSON"),
    ('[{"cmp_key": "x_y", "annotator1": 1, "idx": 0, "response1": "r", "response2": "s"},\n {"cmp_key": "x_y", "annotator1": 7, "idx": 1, "response1": "r", "response2": "s"}]',
     r"j.csv line 2: field 'annotator1' is 7, expected 0, 1 or 2"),
    ('[{"cmp_key": "xy", "annotator1": 1, "idx": 0, "response1": "r", "response2": "s"}]', r"line 1: field 'cmp_key' is 'xy'"),
    ('[{"cmp_key": "x_y", "annotator1": 1, "idx": 0,\n "response2": "s"}]', r"line 1: missing field 'response1'"),
    ('[{"cmp_key": "x_y", "annotator1": 1,\n "idx": 0 "response1": 1}]', r"j.csv line 2: not valid JSON"),
    (llmfao_csv(["0,1,10,20,w1,both,Alpha,Beta"]), r"j.csv line 2: field 'winner' is 'both'"),
    (llmfao_csv(["0,1,10,20,,left,Alpha,Beta"]), r"j.csv line 2: missing field 'worker'"),
    (OI_HEADER + "0,t,P,m1,m2,x,y,a-is-much-better,ann,2023\n", r"j.csv line 2: field 'preference' is 'a-is-much-better'"),
])
def test_bad_input_is_one_line_naming_file_line_and_field(tmp_path, content, message):
    path = write(tmp_path / "j.csv", content)
    with pytest.raises(UserError, match=message) as info:
        jf.load_judgments(path)
    assert "\n" not in str(info.value)


def test_unknown_format_name_and_missing_file(tmp_path):
    path = write(tmp_path / "j.csv", "item,annotator,label\nq,a,a\n")
    with pytest.raises(UserError, match="unknown format 'xml'"):
        jf.load_judgments(path, fmt="xml")
    with pytest.raises(UserError, match="nope.csv: no such file"):
        jf.load_judgments(tmp_path / "nope.csv")
    with pytest.raises(UserError, match="line 1: missing column 'cmp_key'|line 1: expected a JSON array"):
        jf.load_judgments(path, fmt="pandalm")
    with pytest.raises(UserError, match="j.csv line 1: missing column 'id'"):
        jf.load_judgments(path, fmt="llmfao")
