"""Evaluation library and stages: test sets, output sets, campaigns, assignment, judging, report, LLM judge.

Real SQLite files, the real shared data (WizardLM test set, Vicuna-80 answers and GPT-4
reviews, FairEval human labels, llmfao, PandaLM), and the fake OpenAI-compatible server
for the LLM judge and generation.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections import Counter

import pytest

from wizardlab import evaluation as ev
from wizardlab.evaluation import stats
from wizardlab.errors import PermissionDenied, UserError
from wizardlab.evaluation import external, report
from wizardlab.store import Store

V80 = "testsets/vicuna80"
GPT35, VICUNA = "gpt-3.5-turbo:20230327", "vicuna-13b:20230322-clean-lang"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def small(store, tmp_path):
    """Two output sets over five prompts and a campaign with k=2."""
    rows = [{"prompt_id": i, "prompt": f"question {i}", "model": m, "output": f"{m} answers {i}"}
            for m in ("alpha", "beta") for i in range(1, 6)]
    sets = ev.import_outputs(store, _write(tmp_path / "out.jsonl", rows), testset="toy")
    cid = ev.create_campaign(store, "toy campaign", [s["id"] for s in sets], k=2, allow_both_bad=True)
    return store, store.campaign(cid)


# -- test sets and output sets ---------------------------------------------------
def test_wizardlm_testset_keeps_skill_and_difficulty(store, shared_data):
    name, n = ev.import_testset(store, shared_data / "testsets/wizardlm_testset.jsonl")
    prompts = store.prompts_of(name)
    assert (name, n, len(prompts)) == ("wizardlm_testset", 218, 218)
    assert len({p["skill"] for p in prompts}) == 29
    assert sum(p["difficulty"] >= 8 for p in prompts) > 0 and all(1 <= p["difficulty"] <= 10 for p in prompts)


def test_vicuna_answers_match_questions_and_seed_format_testset(store, shared_data, tmp_path):
    sets = ev.import_outputs(store, shared_data / V80 / "answer/answer_alpaca-13b.jsonl")  # no model_id inside
    assert sets[0]["model"] == "alpaca-13b:v1" and len(sets) == 1 and sets[0]["n_outputs"] == 80 and sets[0]["testset"] == "vicuna80"
    assert {p["category"] for p in store.prompts_of("vicuna80")} >= {"generic", "math", "coding"}
    seeds = _write(tmp_path / "seeds.jsonl", [{"instruction": "Add numbers", "input": "2 3"}, {"instruction": "Hi"}])
    name, n = ev.import_testset(store, seeds)
    assert n == 2 and store.prompts_of(name)[0]["text"] == "Add numbers\n\n2 3"


def test_bad_output_file_names_line_and_writes_nothing(store, tmp_path, shared_data):
    bad = _write(tmp_path / "answer_x.jsonl", [{"question_id": 1, "text": "ok"}, {"question_id": 999, "text": "?"}])
    with pytest.raises(UserError, match="line 2: prompt id '999'"):
        ev.import_outputs(store, bad, testset_file=shared_data / V80 / "question.jsonl")
    assert store.list_output_sets() == [] and store.prompts_of("vicuna80") == []
    missing = _write(tmp_path / "o.jsonl", [{"prompt_id": 1, "model": "m"}])
    with pytest.raises(UserError, match="o.jsonl line 1: missing field 'output'"):
        ev.import_outputs(store, missing)


# -- campaigns and assignment ----------------------------------------------------
def test_campaign_all_pairs_and_attention_checks(store, tmp_path):
    rows = [{"prompt_id": i, "prompt": f"q{i}", "model": m, "output": f"{m}{i}"} for m in "xyz" for i in range(4)]
    ids = [s["id"] for s in ev.import_outputs(store, _write(tmp_path / "o.jsonl", rows), testset="t")]
    cid = ev.create_campaign(store, "c", ids, pairs="all", attention_checks=2)
    assert len(store.campaign_items(cid)) == 12
    att = [i for i in store.campaign_items(cid, include_attention=True) if i["attention_label"]]
    assert len(att) == 2 and all(i["response_a"] != i["response_b"] for i in att)
    with pytest.raises(UserError, match="already exists"):
        ev.create_campaign(store, "c", ids)
    with pytest.raises(UserError, match="at least two"):
        ev.create_campaign(store, "d", ids[:1])


def test_assignment_fills_to_k_never_twice(small):
    store, c = small
    seen = Counter()
    for name in ("ann1", "ann2", "ann3"):
        mine = []
        while (item := ev.next_item(store, c, name)) is not None:
            assert item["assignment_id"] not in mine
            ev.submit(store, c, name, item["assignment_id"], "1", request_id=f"{name}-{len(mine)}")
            mine.append(item["assignment_id"])
        items = {r["item_id"] for r in store.query("SELECT item_id FROM assignments WHERE annotator = ?", (name,))}
        assert len(items) == len(mine)
        seen.update(items)
    assert set(seen.values()) == {2} and len(seen) == 5  # every item exactly k=2 times, ann3 got nothing
    assert store.annotator_progress(c["id"], "ann1") == {"done": 5, "skipped": 0, "total": 5}


def test_labels_in_model_terms_and_left_right_recorded(small):
    store, c = small
    for ann in [f"u{i}" for i in range(6)]:
        while (item := ev.next_item(store, c, ann)) is not None:
            text = item["response_1"]  # always click the response of model alpha
            ev.submit(store, c, ann, item["assignment_id"], "1" if text.startswith("alpha") else "2",
                      request_id=f"{ann}{item['assignment_id']}")
    rows = store.campaign_judgments(c["id"])
    assert rows and all(r["label"] == "a" and r["model_a"] == "alpha" for r in rows)
    assert {r["a_on_left"] for r in rows} == {0, 1}
    assert all(r["a_on_left"] == ev.a_on_left(c["id"], 0, r["item_id"], r["annotator"]) for r in rows)


def test_submit_is_idempotent_and_owned(small):
    store, c = small
    item = ev.next_item(store, c, "ann")
    first = ev.submit(store, c, "ann", item["assignment_id"], "tie", request_id="r1", seconds=4.2)
    again = ev.submit(store, c, "ann", item["assignment_id"], "tie", request_id="r1")
    other_click = ev.submit(store, c, "ann", item["assignment_id"], "1", request_id="r2")
    assert not first["duplicate"] and again["duplicate"] and other_click["duplicate"]
    assert store.scalar("SELECT COUNT(*) FROM judgments") == 1
    with pytest.raises(PermissionDenied):
        ev.submit(store, c, "mallory", item["assignment_id"], "1", request_id="r3")
    with pytest.raises(UserError):
        ev.submit(store, c, "ann", item["assignment_id"], "left", request_id="r4")


def test_skip_and_undo(small):
    store, c = small
    one = ev.next_item(store, c, "ann")
    ev.skip(store, "ann", one["assignment_id"])
    two = ev.next_item(store, c, "ann")
    assert two["assignment_id"] != one["assignment_id"]
    ev.submit(store, c, "ann", two["assignment_id"], "2", request_id="x")
    three = ev.next_item(store, c, "ann")
    reopened = ev.undo(store, c, "ann")
    assert reopened == two["assignment_id"] and store.scalar("SELECT COUNT(*) FROM judgments") == 0
    assert ev.next_item(store, c, "ann")["assignment_id"] == two["assignment_id"]
    assert store.query_one("SELECT 1 FROM assignments WHERE id = ?", (three["assignment_id"],)) is None
    # the skipped item is free for others and never comes back to ann
    items = set()
    while (it := ev.next_item(store, c, "ann")) is not None:
        items.add(store.scalar("SELECT item_id FROM assignments WHERE id = ?", (it["assignment_id"],)))
        ev.submit(store, c, "ann", it["assignment_id"], "1", request_id=f"y{it['assignment_id']}")
    skipped_item = store.scalar("SELECT item_id FROM assignments WHERE id = ?", (one["assignment_id"],))
    assert skipped_item not in items and len(items) == 4


def test_concurrent_annotators_separate_connections(small, tmp_path):
    store, c = small
    path = store.path
    errors, done = [], Counter()

    def annotate(name):
        s = Store(path)
        try:
            while (item := ev.next_item(s, c, name)) is not None:
                for _ in range(2):  # a double click
                    ev.submit(s, c, name, item["assignment_id"], "1", request_id=f"{name}:{item['assignment_id']}")
                done[name] += 1
        except (sqlite3.Error, UserError) as exc:
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=annotate, args=(f"t{i}",)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert store.scalar("SELECT COUNT(*) FROM judgments") == sum(done.values()) == 10
    per_item = store.query("SELECT item_id, COUNT(*) AS n FROM judgments GROUP BY item_id")
    assert all(r["n"] == 2 for r in per_item)


# -- report, external judgments ------------------------------------------------------
@pytest.fixture
def vicuna(store, shared_data):
    a = ev.import_outputs(store, shared_data / V80 / "answer/answer_gpt35.jsonl")[0]
    b = ev.import_outputs(store, shared_data / V80 / "answer/answer_vicuna-13b.jsonl")[0]
    cid = ev.create_campaign(store, "ChatGPT vs Vicuna-13B", [a["id"], b["id"]], k=3)
    return store, store.campaign(cid)


def test_vicuna_gpt4_reviews_and_faireval_humans(vicuna, shared_data):
    store, c = vicuna
    rev = shared_data / V80 / "review/vicuna-13b_20230322-clean-lang/review_gpt35_vicuna-13b.jsonl"
    assert external.import_vicuna_reviews(store, c, rev) == {"judged": 80, "not_in_campaign": 0}
    external.import_faireval(store, c, shared_data / "human_judgments/faireval/review_gpt35_vicuna-13b_human.txt",
                             chatgpt=GPT35, vicuna=VICUNA)
    rep = report.build_report(store, c["id"], n_boot=300)
    scores = [json.loads(line)["score"] for line in rev.read_text().splitlines()]
    wins = sum(s[0] > s[1] for s in scores) / 80  # ChatGPT is answer1 and model a
    judge = rep["llm_judges"][0]
    assert judge["judge"] == "llm:gpt-4-review" and judge["pairs"][0]["win"] == pytest.approx(wins)
    human_lines = (shared_data / "human_judgments/faireval/review_gpt35_vicuna-13b_human.txt").read_text().split()
    assert rep["pairs"][0]["win"] == pytest.approx(human_lines.count("CHATGPT") / 80)
    lo, hi = rep["pairs"][0]["ci"]["win"]
    assert lo < rep["pairs"][0]["win"] < hi
    same = sum((s[0] > s[1] and h == "CHATGPT") or (s[0] < s[1] and h == "VICUNA13B") or
               (s[0] == s[1] and h == "TIE") for s, h in zip(scores, human_lines))
    assert judge["majority_agreement"] == pytest.approx(same / 80)
    assert "gpt-4-review" in report.render_text(rep)


def test_report_from_ui_judgments_agreement_and_annotators(small, tmp_path):
    store, c = small
    with store.tx() as conn:
        conn.execute("UPDATE prompts SET difficulty = CASE WHEN prompt_key IN ('1','2') THEN 9 ELSE 3 END")
    for ann, pick in (("x", "alpha"), ("y", "beta"), ("z", "beta")):
        while (item := ev.next_item(store, c, ann)) is not None:
            left_is = item["response_1"].split()[0]
            ev.submit(store, c, ann, item["assignment_id"], "1" if left_is == pick else "2",
                      request_id=f"{ann}{item['assignment_id']}", seconds=5.0)
    rep = report.build_report(store, c["id"], n_boot=200)
    records = [(r["item_id"], r["annotator"], r["label"]) for r in store.campaign_judgments(c["id"])]
    assert rep["agreement"] == stats.agreement(records)
    assert {b["group"] for b in rep["breakdowns"] if b["by"] == "difficulty_split"} == {">=8", "<8"}
    assert rep["position_bias"]["n"] == 10
    assert {a["annotator"] for a in rep["annotators"]} == {"x", "y"}  # k=2: z got nothing
    assert rep["agreement"]["percent_agreement"] == 0.0 and rep["pairs"][0]["tie"] == 1.0
    paths = report.write_csv(rep, tmp_path / "csv")
    assert {p.name for p in paths} >= {"pairs.csv", "annotators.csv", "kappa_pairs.csv", "breakdowns.csv"}


def test_import_pandalm_reproduces_published_kappas(store, shared_data):
    res = external.import_judgments(store, shared_data / "human_judgments/pandalm/testset-v1.json", "pandalm")
    assert res["judgments_read"] == res["judgments_added"] == 2997
    again = external.import_judgments(store, shared_data / "human_judgments/pandalm/testset-v1.json", "pandalm")
    assert again["judgments_added"] == 0
    rep = report.build_report(store, "pandalm", n_boot=10)
    kappas = sorted(round(p["kappa"], 2) for p in rep["agreement"]["cohen_kappa_pairs"])
    assert kappas == [0.85, 0.86, 0.88]
    assert len(rep["ratings"]) >= 3 and rep["pairs"]


def test_llmfao_gpt4_verdicts_vs_crowd_majority(store, shared_data):
    d = shared_data / "human_judgments/llmfao"
    external.import_judgments(store, d / "crowd-comparisons.csv", "llmfao")
    external.import_judgments(store, d / "gpt4-crowd-comparisons.csv", "llmfao", llm=True)
    (judge,) = report.llm_judges_report(store, "llmfao", n_boot=10)
    assert judge["judge"] == "llm:gpt4" and judge["n_items"] == 2139
    assert 0.3 < judge["majority_agreement"] < 0.9 and judge["n_with_majority"] > 1000
    assert judge["majority_agreement_without_ties"] > judge["majority_agreement"]


# -- LLM judge and generation against the fake server --------------------------------
def _client(fake, store):
    from wizardlab.llm import LLMClient
    from wizardlab.llm.openai_backend import OpenAIBackend

    return LLMClient(OpenAIBackend(fake.base_url, "judge-model"), store=store, concurrency=4, max_retries=1,
                     backoff_base=0.01)


def test_llm_judge_both_orders_flip_is_tie(small):
    from wizardlab.evaluation.judge import judge_campaign
    from tests.fakellm import FakeLLM

    store, c = small

    def responder(body):
        user = body["messages"][-1]["content"]
        first = user.split("[The Start of Assistant A's Answer]\n", 1)[1].split()[0]
        if "answers 1" in user:  # position-biased on item 1: always picks A -> a flip
            return "Assistant A. [[A]]"
        if "answers 2" in user:
            return "no verdict here"
        return "[[A]]" if first == "alpha" else "[[B]]"  # prefers alpha in both orders

    async def go(client):
        try:
            return await judge_campaign(store, client, c)
        finally:
            await client.aclose()

    with FakeLLM(responder) as fake:
        result = asyncio.run(go(_client(fake, store)))
        assert len(fake.requests) == 10
        assert {m["role"] for m in fake.requests[0]["messages"]} == {"system", "user"}
    assert (result["done"], result["flips"], result["parse_failures"]) == (4, 1, 1)
    rows = {r["prompt_key"]: r for r in store.campaign_judgments(c["id"])}
    assert rows["1"]["label"] == "tie" and "flip" in rows["1"]["rationale"]
    assert all(rows[k]["label"] == "a" and rows[k]["annotator"] == "llm:judge-model" for k in "345")
    assert "2" not in rows
    with FakeLLM(lambda body: "[[B]]") as fake:  # resumable: only the unparsed item is asked again
        again = asyncio.run(go(_client(fake, store)))
        assert again["total"] == 1 and len(fake.requests) == 2


def test_generate_resumes_and_stops(store, tmp_path):
    from tests.fakellm import FakeLLM
    from wizardlab.config import Settings
    from wizardlab.evaluation.generate import generate_outputs, prepare_generation

    tsv = _write(tmp_path / "ts.jsonl", [{"idx": i, "Skill": "Math", "Difficulty": i, "Instruction": f"q{i}"}
                                         for i in range(1, 7)])
    with FakeLLM(lambda body: "answer to " + body["messages"][-1]["content"]) as fake:
        settings = Settings(db=store.path, base_url=fake.base_url, model="gen-model", concurrency=2)
        run_id = prepare_generation(store, settings, testset_file=str(tsv))
        assert prepare_generation(store, settings, testset_file=str(tsv)) == run_id
        calls = []
        first = asyncio.run(generate_outputs(store, run_id, stop=lambda: len(calls) >= 2,
                                             on_progress=lambda p: calls.append(p["done"])))
        assert first["stopped"] and 2 <= first["done"] < 6
        second = asyncio.run(generate_outputs(store, run_id))
        assert second["done"] == second["total"] == 6 and not second["stopped"]
        assert len(fake.requests) == 6
    outs = store.outputs_of(store.output_set_by_run(run_id)["id"])
    assert sorted(o["text"] for o in outs) == sorted(f"answer to q{i}" for i in range(1, 7))


def test_cli_stages(tmp_path, shared_data, capsys):
    from pipeline.__main__ import main

    db = str(tmp_path / "cli.db")
    a = shared_data / V80 / "answer"
    assert main(["import-outputs", "--db", db, str(a / "answer_gpt35.jsonl"), str(a / "answer_vicuna-13b.jsonl")]) == 0
    assert main(["campaign", "--db", db, "create", "--name", "v", "--sets", "1", "2", "--k", "2"]) == 0
    rev = shared_data / V80 / "review/vicuna-13b_20230322-clean-lang/review_gpt35_vicuna-13b.jsonl"
    assert main(["import-judgments", "--db", db, str(rev), "--campaign", "v", "--format", "vicuna-review"]) == 0
    capsys.readouterr()
    assert main(["report", "--db", db, "--campaign", "v", "--json", "--bootstrap", "50"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["llm_judges"][0]["pairs"][0]["n"] == 80
    assert main(["campaign", "--db", db, "create", "--name", "v", "--sets", "1", "2"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_generate_job_sigterm_while_endpoint_hangs_then_resume(store, tmp_path):
    import time
    from pathlib import Path

    from tests.fakellm import Fault, FakeLLM
    from wizardlab import jobs
    from wizardlab.config import Settings
    from wizardlab.evaluation.generate import prepare_generation

    tsv = _write(tmp_path / "ts.jsonl", [{"question_id": i, "text": f"q{i}", "category": "c"} for i in range(1, 4)])
    hang = {"on": True}

    def wait(pred, timeout=60):
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, store.get_run(run_id)
            time.sleep(0.1)

    with FakeLLM(lambda body: Fault(hang=60) if hang["on"] else "ok") as fake:
        settings = Settings(db=store.path, base_url=fake.base_url, model="gen-model", concurrency=2)
        run_id = prepare_generation(store, settings, testset_file=str(tsv))
        jobs.launch(store, run_id, "generate", ["--run-id", run_id], log_path=tmp_path / "gen.log")
        wait(lambda: len(fake.requests) >= 2)
        jobs.cancel(store, run_id)
        wait(lambda: store.get_run(run_id)["status"] == "cancelled", 20)  # not the 60 s of the hang
        hang["on"] = False
        jobs.launch(store, run_id, "generate", ["--run-id", run_id], log_path=tmp_path / "gen.log")
        wait(lambda: store.get_run(run_id)["status"] == "done")
    assert len(store.outputs_of(store.output_set_by_run(run_id)["id"])) == 3
    assert store.get_run(run_id)["progress"]["done"] == 3


def test_release_frees_items_held_by_annotators_who_left(small):
    store, c = small
    held = ev.next_item(store, c, "gone")
    assert store.release_open_assignments(c["id"], 3600) == 0
    assert store.release_open_assignments(c["id"], -1) == 1
    assert store.query_one("SELECT 1 FROM assignments WHERE id = ?", (held["assignment_id"],)) is None


def test_generate_with_a_local_checkpoint_dir(store, tmp_path):
    """A trained checkpoint is just a directory: `--model DIR` without an endpoint runs it in-process."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from wizardlab.config import Settings
    from wizardlab.evaluation.generate import generate_outputs, prepare_generation

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["### Instruction: q1 q2 ### Response: an answer"], trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<pad>", "<bos>", "<eos>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(hf), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, eos_token_id=2,
                                         bos_token_id=1, pad_token_id=0))
    ckpt = tmp_path / "checkpoint"
    model.save_pretrained(ckpt)
    hf.save_pretrained(ckpt)
    tsv = _write(tmp_path / "ts.jsonl", [{"idx": i, "Skill": "Math", "Difficulty": 9, "Instruction": f"q{i}"}
                                         for i in (1, 2)])
    run_id = prepare_generation(store, Settings(db=store.path, model=str(ckpt)), testset_file=str(tsv),
                                max_tokens=8)
    assert asyncio.run(generate_outputs(store, run_id))["done"] == 2
    out_set = store.output_set_by_run(run_id)
    assert out_set["model"] == str(ckpt) and len(store.outputs_of(out_set["id"])) == 2


def test_cli_judge_stage_records_run_and_judgments(small, capsys):
    from pipeline.__main__ import main
    from tests.fakellm import FakeLLM

    store, c = small
    with FakeLLM(lambda body: "[[C]]") as fake:
        assert main(["judge", "--db", store.path, "--campaign", str(c["id"]), "--base-url", fake.base_url,
                     "--model", "cli-judge", "--concurrency", "2"]) == 0
    assert {(b["temperature"], b["top_p"], b["max_tokens"]) for b in fake.requests} == {(1, 0.95, 2048)}
    run = store.list_runs("judge")[0]
    assert run["status"] == "done" and run["progress"]["done"] == 5 and run["progress"]["calls"] == 10
    labels = {r["label"] for r in store.campaign_judgments(c["id"]) if r["annotator"] == "llm:cli-judge"}
    assert labels == {"tie"} and "5 judged" in capsys.readouterr().err
