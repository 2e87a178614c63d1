"""The Evaluate tab's evaluation tools through real HTTP: import judgments, agreement of a
file, generation from a trained checkpoint, release of idle assignments; annotators refused.

The real Gradio app runs in-process (tests.uihelpers.start_app); files go through Gradio's
/gradio_api/upload endpoint like a browser's, then the named endpoints are called over
Gradio's HTTP API. `python tests/test_evaluate_tab.py [DIR]` writes the screenshot
DIR/evaluate_tools.png (default docs/screenshots).
"""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest

from tests.uihelpers import browser, call_api, http_login, login, make_user, start_app, stop_app, upload_file
from wizardlab import evaluation as ev
from wizardlab import jobs
from wizardlab.evaluation import stats
from wizardlab.errors import UserError
from wizardlab.evaluation.formats import load_judgments

PANDALM = "human_judgments/pandalm/testset-v1.json"
ROW = re.compile(r"<tr>((?:<td>[^<]*</td>)+)</tr>")


def upload(client, path: Path) -> dict:
    """Upload a file as the browser does; returns the FileData payload an endpoint takes."""
    with open(path, "rb") as fh:
        r = client.post("/gradio_api/upload", files=[("files", (path.name, fh))])
    r.raise_for_status()
    return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def rows(html: str) -> list[list[str]]:
    """The body rows of every table in `html`, as lists of cell texts (HTML entities left as they are)."""
    return [re.findall(r"<td>([^<]*)</td>", m.group(1)) for m in ROW.finditer(html)]


def counts(store) -> dict:
    tables = ("campaigns", "judgments", "runs", "assignments", "prompts", "output_sets")
    return {t: store.scalar(f"SELECT COUNT(*) FROM {t}") for t in tables}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaltools")
    base_url, admin, password, ctx = start_app(tmp)
    make_user(ctx, "ann", "ann-pass-123")
    adm, ann = http_login(base_url, admin, password), http_login(base_url, "ann", "ann-pass-123")
    ctx._login = (base_url, admin, password)
    yield ctx, adm, ann, tmp
    adm.close()
    ann.close()
    stop_app(ctx)


@pytest.fixture(scope="module")
def small_csv(app) -> Path:
    _, _, _, tmp = app
    path = tmp / "small.csv"
    data = [("q1", "x", "a"), ("q1", "y", "a"), ("q1", "z", "b"), ("q2", "x", "tie"), ("q2", "y", "tie"),
            ("q2", "z", "tie"), ("q3", "x", "b"), ("q3", "y", "a"), ("q3", "z", "b"), ("q4", "x", "a"),
            ("q4", "y", "a"), ("q4", "z", "a"), ("q5", "x", "b"), ("q5", "y", "b")]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([("item", "annotator", "label"), *data])
    return path


def test_admin_imports_pandalm_and_the_report_reproduces_its_kappas(app, shared_data):
    ctx, adm, _, _ = app
    src = shared_data / PANDALM
    event, data = call_api(adm, "eval_import_judgments", [upload(adm, src), "auto", "pandalm", False,
                                                          "gpt-4-review", "", "", None])
    assert event == "complete", data
    store = ctx.store()
    c = store.campaign("pandalm")
    n = len(load_judgments(src))
    shown = rows(data[0])[0]
    assert shown == [str(c["id"]), str(n), str(n), str(len(store.campaign_items(c["id"])))]
    event, data = call_api(adm, "eval_report", [c["id"], False])
    assert event == "complete", data
    kappas = sorted(round(float(r[3]), 2) for r in rows(data[1]) if len(r) == 4 and r[0].startswith("annotator"))
    assert kappas == [0.85, 0.86, 0.88]
    again = rows(call_api(adm, "eval_import_judgments", [upload(adm, src), "pandalm", "pandalm", False,
                                                         "", "", "", None])[1][0])[0]
    assert again[1:3] == [str(n), "0"]  # importing the same file twice adds nothing


def test_vicuna_reviews_and_faireval_labels_onto_an_existing_campaign(app, shared_data):
    ctx, adm, _, _ = app
    store = ctx.store()
    v80 = shared_data / "testsets/vicuna80"
    answers = [v80 / "answer/answer_gpt35.jsonl", v80 / "answer/answer_vicuna-13b.jsonl"]
    sets = [ev.import_outputs(store, a)[0]["id"] for a in answers]
    name = store.campaign(ev.create_campaign(store, "ChatGPT vs Vicuna", sets, k=3))["name"]
    review = upload(adm, v80 / "review/vicuna-13b_20230322-clean-lang/review_gpt35_vicuna-13b.jsonl")
    event, data = call_api(adm, "eval_import_judgments", [review, "vicuna-review", name, False, "gpt-4", "", "", None])
    assert event == "error" and "answer files" in json.dumps(data)
    event, data = call_api(adm, "eval_import_judgments", [review, "vicuna-review", name, False, "gpt-4", "", "",
                                                          [upload(adm, a) for a in answers]])
    assert event == "complete" and rows(data[0])[0] == ["80", "0"], data
    human = upload(adm, shared_data / "human_judgments/faireval/review_gpt35_vicuna-13b_human.txt")
    event, data = call_api(adm, "eval_import_judgments", [human, "faireval", name, False, "", "", "", None])
    assert event == "error" and "model names" in json.dumps(data)
    event, data = call_api(adm, "eval_import_judgments", [human, "faireval", name, False, "", "gpt-3.5-turbo:20230327",
                                                          "vicuna-13b:20230322-clean-lang", None])
    assert event == "complete" and rows(data[0])[0] == ["80"], data
    by = {r["annotator"] for r in store.campaign_judgments(store.campaign(name)["id"])}
    assert by == {"llm:gpt-4", "faireval-humans"}


def test_agreement_of_a_small_csv_shows_what_stats_gives(app, small_csv):
    ctx, adm, _, _ = app
    before = counts(ctx.store())
    event, data = call_api(adm, "eval_agreement", [upload(adm, small_csv), "auto"])
    assert event == "complete", data
    with open(small_csv, newline="") as fh:
        records = [(r["item"], r["annotator"], r["label"]) for r in csv.DictReader(fh)]
    want = stats.agreement(records)
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    num = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    table = rows(data[0])
    assert table[0] == [str(want["n_items"]), str(want["n_annotators"]), str(want["n_judgments"]),
                        pct(want["percent_agreement"]), pct(want["percent_agreement_without_ties"]),
                        num(want["cohen_kappa_mean"]), num(want["fleiss_kappa"]), num(want["krippendorff_alpha"])]
    assert want["fleiss_kappa"] is None and want["krippendorff_alpha"] is not None  # q5 has 2 raters, others 3
    pairs = {(r[0], r[1]): r[2:] for r in table[1:] if len(r) == 4}
    assert pairs == {(p["a"], p["b"]): [str(p["n"]), num(p["kappa"])] for p in want["cohen_kappa_pairs"]}
    assert counts(ctx.store()) == before
    event, data = call_api(adm, "eval_agreement", [None, "auto"])
    assert event == "error" and "choose a judgments file" in json.dumps(data)


def _campaign_with_open_assignment(store, tmp: Path) -> dict:
    rows_ = [{"prompt_id": i, "prompt": f"Q{i}?", "model": m, "output": f"{m} says {i}"}
             for m in ("m-one", "m-two") for i in range(3)]
    path = tmp / "outs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_))
    sets = ev.import_outputs(store, path, testset="release-ts")
    c = store.campaign(ev.create_campaign(store, "release me", [s["id"] for s in sets], k=1))
    assert ev.next_item(store, c, "gone") is not None  # an annotator opened an item and left
    return c


def _open(store, cid: int) -> int:
    return store.scalar("SELECT COUNT(*) FROM assignments WHERE campaign_id = ? AND status = 'open'", (cid,))


def test_release_frees_idle_assignments(app):
    ctx, adm, _, tmp = app
    store = ctx.store()
    c = _campaign_with_open_assignment(store, tmp)
    event, data = call_api(adm, "eval_release", [c["id"], 30])
    assert event == "complete" and "Released 0 open assignments" in data[0] and _open(store, c["id"]) == 1
    event, data = call_api(adm, "eval_release", [c["id"], 0])
    assert event == "complete" and "Released 1 open assignment " in data[0] and _open(store, c["id"]) == 0
    assert "gone" not in data[1] or "<td>gone</td><td>0</td><td>0</td><td>0</td>" in data[1]
    event, data = call_api(adm, "eval_release", [c["id"], -5])
    assert event == "error" and "minimum" in json.dumps(data) and _open(store, c["id"]) == 0


def _wait_ended(store, run_id: int, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        jobs.refresh(store)
        run = store.get_run(run_id)
        if run["status"] not in ("pending", "queued", "running"):
            return run
        time.sleep(0.2)
    jobs.kill(store, run_id)
    raise AssertionError(f"run {run_id} did not end: {store.get_run(run_id)['status']}")


def test_generate_from_a_training_runs_checkpoint(app):
    from eval_ui.evaluate import model_choices

    ctx, adm, _, tmp = app
    store = ctx.store()
    ckpt = tmp / "sft-out" / "final"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    train_id = store.create_run("train", {"output_dir": str(ckpt.parent), "model_dir": str(ckpt)}, name="tiny sft",
                                status="done")
    assert (f"run:{train_id}") in [v for _, v in model_choices(store)]
    ts = tmp / "ts.jsonl"
    ts.write_text("".join(json.dumps({"idx": i, "Skill": "Math", "Difficulty": 3, "Instruction": f"q{i}"}) + "\n"
                          for i in (1, 2)))
    before = counts(store)
    event, data = call_api(adm, "eval_generate", ["", upload(adm, ts), "", "dir", str(tmp / "missing")])
    assert event == "error" and "does not exist" in json.dumps(data) and counts(store) == before
    event, data = call_api(adm, "eval_generate", ["", upload(adm, ts), "from ckpt", f"run:{train_id}", ""])
    assert event == "complete", data
    run = store.list_runs("generate")[0]
    assert run["config"]["model"] == str(ckpt.resolve()) and run["config"]["base_url"] is None
    assert store.output_set("from ckpt")["model"] == str(ckpt.resolve())
    assert f"Generation run {run['id']}" in data[0]
    assert store.get_run(run["id"])["status"] == "running"
    try:
        jobs.cancel(store, run["id"])
    except UserError as exc:  # it may have ended in between (failed: a config-only directory)
        assert "is not running" in str(exc)
    ended = _wait_ended(store, run["id"])
    assert ended["status"] in ("cancelled", "failed")


def test_annotator_is_refused_on_every_new_endpoint(app, small_csv, shared_data):
    ctx, adm, ann, tmp = app
    store = ctx.store()
    cid = store.campaign("release me")["id"] if store.campaign("release me") else \
        _campaign_with_open_assignment(store, tmp)["id"]
    ev.next_item(store, store.campaign(cid), "someone")
    before = counts(store)
    pandalm = upload(ann, shared_data / PANDALM)
    calls = {
        "eval_import_judgments": [pandalm, "auto", "sneaky", False, "", "", "", None],
        "eval_agreement": [upload(ann, small_csv), "auto"],
        "eval_release": [cid, 0],
        "eval_generate": ["", None, "sneaky set", "dir", str(tmp)],
        "eval_plan": [0.1, 0.3, 3, 0.2, 0.8],
    }
    for api, data in calls.items():
        event, payload = call_api(ann, api, data)
        assert event == "error" and "Only admins" in json.dumps(payload), (api, event, payload)
    assert counts(store) == before and store.campaign("sneaky") is None



def evaluate_tools_page(page, base_url: str, admin: str, password: str, judgments: Path, agreement_csv: Path):
    """In the browser: import `judgments` into a new campaign, compute the agreement of a CSV."""
    login(page, base_url, admin, password)
    page.get_by_role("tab", name="Evaluate").click()
    tabs = page.locator("#wl-eval-tabs [role=tab]")
    tabs.first.wait_for()
    assert tabs.all_inner_texts() == ["Output sets", "Campaigns", "Report", "LLM judge", "Tools"]
    assert page.evaluate("document.documentElement.scrollHeight") < 1600  # was one 2,700-pixel column
    page.get_by_role("tab", name="Tools").click()
    upload_file(page, "wl-jfile", judgments)
    page.locator("#wl-import-campaign input").fill("PandaLM humans")
    page.locator("#wl-import-campaign input").press("Enter")
    page.locator("#wl-import-judgments-btn").click()
    page.locator("#wl-import-result table").wait_for(timeout=60_000)
    upload_file(page, "wl-afile", agreement_csv)
    page.locator("#wl-agree-btn").click()
    page.locator("#wl-agree-result table").first.wait_for(timeout=60_000)


def test_browser_imports_and_computes_agreement(app, small_csv, shared_data):
    ctx, _, _, _ = app
    with browser() as b:
        page = b.new_page(viewport={"width": 1440, "height": 1000})
        evaluate_tools_page(page, *ctx._login, shared_data / PANDALM, small_csv)
        imported = page.locator("#wl-import-result").inner_text()
        agreement = page.locator("#wl-agree-result").inner_text()
    c = ctx.store().campaign("PandaLM humans")
    assert c is not None and "2997" in imported and "PandaLM humans" in imported
    lines = small_csv.read_text().splitlines()
    want = stats.agreement([(r["item"], r["annotator"], r["label"]) for r in csv.DictReader(lines)])
    assert f"{want['krippendorff_alpha']:.3f}" in agreement and f"{100 * want['percent_agreement']:.1f}%" in agreement


def take_screenshot(out_dir: str, shared: Path) -> str:
    """docs/screenshots/evaluate_tools.png: the Evaluate tab's Tools (import judgments, agreement of a file)
    in use; evaluate.png: its Output sets sub-tab with generation from a training run's checkpoint."""
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    base_url, admin, password, ctx = start_app(tmp)
    sample = tmp / "judgments.csv"
    keep = [r for r in load_judgments(shared / PANDALM) if int(r["item"]) % 8 == 0]
    with open(sample, "w", newline="") as fh:
        csv.writer(fh).writerows([("item", "annotator", "label"), *[(r["item"], r["annotator"], r["label"])
                                                                      for r in keep]])
    store = ctx.store()
    ckpt = tmp / "runs" / "sft-7b" / "final"
    ckpt.mkdir(parents=True)
    store.create_run("train", {"output_dir": str(ckpt.parent), "model_dir": str(ckpt)}, name="sft on evolved 70k",
                     status="done")
    out = Path(out_dir) / "evaluate_tools.png"
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1440, "height": 1000})
            evaluate_tools_page(page, base_url, admin, password, shared / PANDALM, sample)
            page.wait_for_timeout(800)
            page.screenshot(path=str(out), full_page=True)
            page.get_by_role("tab", name="Output sets").click()
            page.locator("#wl-gen-model input").click()
            page.get_by_role("option", name="Training run").first.click()
            page.get_by_role("tab", name="Campaigns").click()
            page.get_by_role("tab", name="Output sets").click()
            page.wait_for_timeout(800)
            page.screenshot(path=str(Path(out_dir) / "evaluate.png"), full_page=True)
    finally:
        stop_app(ctx)
    return str(out)


def test_planner_on_the_campaign_form(app):
    from wizardlab.evaluation import trust

    _, adm, _, _ = app
    event, data = call_api(adm, "eval_plan", [0.12, 0.3, 3, 0.3, 0.8])
    assert event == "complete", data
    want = trust.plan(0.12, 0.3, 3, icc=0.3, power=0.8)
    assert rows(data[0])[0][-2:] == [str(want["n_items"]), str(want["n_judgments"])]
    event, data = call_api(adm, "eval_plan", [0, 0.3, 3, 0.3, 0.8])
    assert event == "error" and "planner" in json.dumps(data)


def _reviewer(body):
    """A Vicuna-style reviewer: alpha's answers 8, beta's 6, whichever is shown first."""
    user = body["messages"][-1]["content"]
    first = user.split("[The Start of Assistant 1's Answer]\n", 1)[1].split()[0]
    second = user.split("[The Start of Assistant 2's Answer]\n", 1)[1].split()[0]
    score = {"alpha": 8, "beta": 6}
    return f"{score[first]} {score[second]}\nAlpha is more complete."


def test_score_judge_from_the_tab_and_the_capacity_chart_in_the_report(tmp_path):
    from tests.fakellm import FakeLLM

    with FakeLLM(_reviewer) as fake:
        base_url, admin, password, ctx = start_app(tmp_path, base_url=fake.base_url, model="reviewer")
        adm = http_login(base_url, admin, password)
        try:
            store = ctx.store()
            rows = [{"prompt_id": i, "prompt": f"question {i}", "model": m, "output": f"{m} answers {i}"}
                    for m in ("alpha", "beta") for i in range(1, 5)]
            out = tmp_path / "out.jsonl"
            out.write_text("".join(json.dumps(r) + "\n" for r in rows))
            sets = [s["id"] for s in ev.import_outputs(store, out, testset="toy")]
            cid = ev.create_campaign(store, "scored", sets, k=1)
            event, data = call_api(adm, "eval_llm_judge", [cid, "sideways"])
            assert event == "error" and store.list_runs("judge") == []
            event, data = call_api(adm, "eval_llm_judge", [cid, "score"])
            assert event == "complete" and "(score)" in data[0], data
            run = _wait_ended(store, store.list_runs("judge")[0]["id"], timeout=120)
            assert run["status"] == "done" and run["config"]["mode"] == "score", run
            assert len(fake.requests) == 8
            event, data = call_api(adm, "eval_report", [cid, False])
            assert event == "complete", data
            html = data[1]
            assert "Capacity of alpha relative to beta" in html and "133.3%" in html and "wl-cap-fill" in html
            assert "over all judgments" in html and "Length- and style-controlled" in html
            assert "LLM judge report cards" in html and "llm-score:reviewer" in html
        finally:
            adm.close()
            stop_app(ctx)


def take_report_screenshot(out_dir: str, shared: Path) -> str:
    """docs/screenshots/report_capacity.png: the Report sub-tab of Vicuna-13B vs ChatGPT with the shared
    GPT-4 reviews (capacity chart per category) and FairEval's human labels."""
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    base_url, admin, password, ctx = start_app(tmp)
    store = ctx.store()
    v80 = shared / "testsets/vicuna80"
    sets = [ev.import_outputs(store, v80 / f"answer/answer_{m}.jsonl")[0]["id"] for m in ("vicuna-13b", "gpt35")]
    c = store.campaign(ev.create_campaign(store, "Vicuna-13B vs ChatGPT", sets, k=1))
    from wizardlab.evaluation import external

    external.import_vicuna_reviews(store, c, v80 / "review/vicuna-13b_20230322-clean-lang/review_gpt35_vicuna-13b.jsonl")
    external.import_faireval(store, c, shared / "human_judgments/faireval/review_gpt35_vicuna-13b_human.txt",
                             chatgpt="gpt-3.5-turbo:20230327", vicuna="vicuna-13b:20230322-clean-lang")
    out = Path(out_dir) / "report_capacity.png"
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1440, "height": 1000})
            login(page, base_url, admin, password)
            page.get_by_role("tab", name="Evaluate").click()
            page.get_by_role("tab", name="Report").click()
            page.locator("#wl-report-campaign input").click()
            page.get_by_role("option", name=re.compile("Vicuna-13B vs ChatGPT")).first.click()
            page.locator("#wl-report .wl-cap").wait_for(timeout=120_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out), full_page=True)
    finally:
        stop_app(ctx)
    return str(out)


def take_planner_screenshot(out_dir: str) -> str:
    """docs/screenshots/planner.png: the campaign form's "How many judgments are enough?" planner."""
    import tempfile

    base_url, admin, password, ctx = start_app(Path(tempfile.mkdtemp()))
    out = Path(out_dir) / "planner.png"
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1440, "height": 1000})
            login(page, base_url, admin, password)
            page.get_by_role("tab", name="Evaluate").click()
            page.get_by_role("tab", name="Campaigns").click()
            page.get_by_text("How many judgments are enough?").click()
            page.locator("#wl-plan-btn").click()
            page.locator("#wl-plan-out table").wait_for(timeout=60_000)
            page.locator("#wl-planner").screenshot(path=str(out))
    finally:
        stop_app(ctx)
    return str(out)


if __name__ == "__main__":
    import sys

    from tests.conftest import SHARED_DATA

    target = sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"
    print(take_screenshot(target, Path(SHARED_DATA)))
    print(take_report_screenshot(target, Path(SHARED_DATA)))
    print(take_planner_screenshot(target))


def test_vicuna_answer_files_import_with_their_question_file(app, shared_data):
    """Issue 12.5: an answer file alone gets a plain message (no command-line flag); with
    question.jsonl the test set is named from its content, not from the upload folder."""
    ctx, adm, _, _ = app
    store = ctx.store()
    v80 = shared_data / "testsets/vicuna80"
    before = counts(store)
    event, data = call_api(adm, "eval_import", [[upload(adm, v80 / "answer/answer_gpt35.jsonl")], None, "", ""])
    assert event == "error" and "question.jsonl" in json.dumps(data) and "--" not in json.dumps(data)
    assert counts(store) == before
    old = {s["name"] for s in store.list_output_sets()}
    answers = [upload(adm, v80 / f"answer/answer_{m}.jsonl") for m in ("alpaca-13b", "bard")]
    event, data = call_api(adm, "eval_import", [answers, upload(adm, v80 / "question.jsonl"), "", ""])
    assert event == "complete", data
    names = {s["name"] for s in store.list_output_sets()} - old
    assert {n.split("/")[0] for n in names} == {"vicuna80"} and len(names) == 2, names
    assert all(len(n) < 40 for n in names)
    assert store.output_set(sorted(names)[0])["n_outputs"] == 80


def test_campaign_close_open_and_assign_from_the_tab(app, tmp_path):
    ctx, adm, ann, _ = app
    store = ctx.store()
    c = _campaign_with_open_assignment(store, tmp_path) if not store.campaign("release me") else \
        store.campaign("release me")
    event, data = call_api(adm, "eval_close_campaign", [c["id"]])
    assert event == "complete" and store.campaign(c["id"])["status"] == "closed" and "closed" in data[0]
    assert c["id"] not in [x["id"] for x in ev.annotator_campaigns(store)]
    event, data = call_api(adm, "eval_open_campaign", [c["id"]])
    assert event == "complete" and store.campaign(c["id"])["status"] == "open"
    event, data = call_api(adm, "eval_assign", [c["id"], "newbie, ann , newbie", ""])
    assert event == "complete", data
    assert store.get_user("newbie")["role"] == "annotator" and "created" in data[0] and "exists" in data[0]
    event, data = call_api(adm, "eval_assign", [c["id"], "bad name!", ""])
    assert event == "error" and "username" in json.dumps(data)
    for api, args in (("eval_close_campaign", [c["id"]]), ("eval_assign", [c["id"], "sneaky2", ""])):
        event, data = call_api(ann, api, args)
        assert event == "error" and "Only admins" in json.dumps(data)
    assert store.get_user("sneaky2") is None and store.campaign(c["id"])["status"] == "open"
