"""Experiments end to end on tiny-llama and the fake endpoint: three arms (seeds only; rounds <= 1;
all rounds) from recipes to report, with the driver killed mid-way and resumed by a restarted app;
and the pieces (definition checks, failed arm and retry, the report's paired test) on small data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakellm import FakeLLM
from tests.uihelpers import free_port, make_forest
from wizardlab import evaluation, experiments, recipes
from wizardlab.errors import UserError
from wizardlab.experiments import ArmSpec, ExperimentConfig
from wizardlab.recipes import Recipe

REPO = Path(__file__).resolve().parent.parent
SKILLS = ["Math", "Code Generation", "Math", "Writting", "Code Generation", "Reasoning"]
RANK = {"seeds": 0, "r1": 1, "all": 2}  # the scripted annotator prefers more rounds


def _forest(store) -> int:
    seeds = [{"instruction": f"Explain topic {i} simply.", "input": "", "response": f"Topic {i} is simple."}
             for i in range(4)]
    r1 = [{"status": "kept", "instruction": f"Explain topic {i} with an example.", "response": "An example.",
           "operation": "deepening"} for i in range(4)]
    r2 = [{"status": "kept", "instruction": f"Explain topic {i} to a child, in two steps.", "response": "Two steps.",
           "operation": "increase_reasoning"} for i in range(4)]
    return make_forest(store, seeds, [r1, r2])


def _testset(store, tmp_path, n=6) -> str:
    path = tmp_path / "tiny_testset.jsonl"
    path.write_text("".join(json.dumps({"idx": i + 1, "Skill": SKILLS[i % len(SKILLS)], "Difficulty": 3 + i,
                                        "Instruction": f"Question {i}: what is {i} plus {i}?"}) + "\n"
                            for i in range(n)))
    name, _ = evaluation.import_testset(store, path, "tiny")
    return name


def _recipes(store) -> None:
    recipes.create_recipe(store, "seeds", Recipe(seeds_only=True))
    recipes.create_recipe(store, "r1", Recipe(max_round=1))
    recipes.create_recipe(store, "all", Recipe())


def _wait(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _judge_scripted(store, campaign_id: int, annotator: str = "ana") -> int:
    """Judge every item as the scripted annotator: more rounds win, prompt 1 is a tie."""
    from wizardlab.evaluation.annotate import a_on_left

    # tiny-llama answers random tokens, which now and then spell a model name ("Bard", "Alpaca"):
    # the identity scan then holds the campaign for review, as it should; the lead keeps those hits
    for hit in store.identity_hits(campaign_id, open_only=True):
        evaluation.resolve_identity(store, campaign_id, hit["id"], "keep", by="lead")
    campaign = store.campaign(campaign_id)
    assert campaign["status"] == "open"
    items = store.campaign_items(campaign_id)
    arm_of = {s["model"]: arm for arm, s in experiments.arm_output_sets(
        store, store.experiment(store.list_experiments()[0]["id"])).items()}
    n = 0
    for item in items:  # one annotator: items come in id order
        view = evaluation.next_item(store, campaign, annotator)
        assert view is not None
        a, b = RANK[arm_of[item["model_a"]]], RANK[arm_of[item["model_b"]]]
        left_is_a = a_on_left(campaign_id, campaign["config"].get("seed", 0), item["item_id"], annotator)
        if item["prompt_key"] == "1":
            choice = "tie"
        else:
            choice = "1" if (a > b) == left_is_a else "2"
        evaluation.submit(store, campaign, annotator, view["assignment_id"], choice, request_id=f"r{n}")
        n += 1
    return n


def test_three_arms_from_recipes_to_report_resuming_after_a_restart(store, tmp_path):
    _forest(store)
    testset = _testset(store, tmp_path)
    _recipes(store)
    with FakeLLM(lambda body: "Both are fine, but the first is clearer. [[A]]") as fake:
        config = ExperimentConfig(testset=testset, pairs="all", k=1, max_tokens=6,
                                  train={"max_steps": 2, "max_length": 64, "save_steps": 100},
                                  judge_base_url=fake.base_url, judge_model="fake-judge")
        arms = [ArmSpec(name, name) for name in ("seeds", "r1", "all")]
        exp_id = experiments.create_experiment(store, "rounds ablation", arms, config, data_dir=tmp_path / "data")
        assert experiments.launch(store, exp_id) == "running"
        # kill the driver as soon as a training is under way (the others still queued)
        _wait(lambda: any(a["train_run_id"] for a in store.experiment_arms(exp_id)), 120, "a training step")
        driver = store.get_run(store.experiment(exp_id)["driver_run_id"])
        os.killpg(os.getpgid(driver["pid"]), signal.SIGKILL)
        _wait(lambda: not experiments.jobs.process_alive(store.get_run(driver["id"])), 20, "the driver to die")
        assert store.experiment(exp_id)["status"] == "running"

        app = _start_app(store, tmp_path)  # the restarted app relaunches the driver
        try:
            _wait(lambda: store.experiment(exp_id)["status"] in ("done", "failed"), 420, "the experiment")
        finally:
            app.terminate()
            app.wait(30)
        exp = store.experiment(exp_id)
        assert exp["status"] == "done", exp["error"]
    view = experiments.status(store, exp_id)
    assert [(a["name"], a["status"], a["rows"]) for a in view["arms"]] == [
        ("seeds", "done", 4), ("r1", "done", 8), ("all", "done", 12)]
    assert store.get_run(exp["driver_run_id"])["status"] == "done"
    assert _judge_scripted(store, exp["campaign_id"]) == 18  # 3 pairs x 6 prompts

    from wizardlab.evaluation import experiment_report as er

    rep = er.build(store, exp_id, n_boot=200)
    arms = {a["name"]: a for a in rep["arms"]}
    assert arms["seeds"]["profile"]["per_round"] == {"0": 4}
    assert arms["all"]["profile"]["per_round"] == {"0": 4, "1": 4, "2": 4}
    assert arms["all"]["win_rate"] > arms["r1"]["win_rate"] > arms["seeds"]["win_rate"]
    assert arms["all"]["rating"]["rating"] > arms["seeds"]["rating"]["rating"]
    top = next(c for c in rep["comparisons"] if {c["x"], c["y"]} == {"seeds", "all"})
    assert top["how"] == "head to head" and top["n_untied"] == 5 and top["p_value"] == pytest.approx(0.0625)
    assert rep["llm_judges"][0]["judge"] == "llm:fake-judge"
    assert "beat" in rep["summary"] and "sign test" in rep["summary"]
    assert {b["by"] for b in rep["breakdowns"]} >= {"skill", "difficulty_split"}
    html = er.write_html(rep, tmp_path / "report.html").read_text()
    assert "<svg" in html and "rounds ablation" in html and not any(t in html for t in ("src=", "<link", "href="))
    assert {p.name for p in er.write_csv(rep, tmp_path / "csv")} >= {"arms.csv", "comparisons.csv"}


def _start_app(store, tmp_path) -> subprocess.Popen:
    env = {**os.environ, "WIZARDLAB_ADMIN_PASSWORD": "admin-pass-123", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("WIZARDLAB_BASE_URL", None)
    log = open(tmp_path / "app.log", "ab")
    return subprocess.Popen([sys.executable, "app.py", "--db", str(store.path), "--port", str(free_port()),
                             "--data-dir", str(tmp_path / "data")], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def test_definition_is_checked_before_anything_runs(store, tmp_path):
    _forest(store)
    testset = _testset(store, tmp_path, 2)
    _recipes(store)
    cfg = ExperimentConfig(testset=testset)
    with pytest.raises(UserError, match="at least two arms"):
        experiments.create_experiment(store, "x", [ArmSpec("a", "seeds")], cfg, data_dir=tmp_path)
    with pytest.raises(UserError, match="recipe 'nope' does not exist"):
        experiments.create_experiment(store, "x", [ArmSpec("a", "seeds"), ArmSpec("b", "nope")], cfg,
                                      data_dir=tmp_path)
    with pytest.raises(UserError, match="preset"):
        experiments.create_experiment(store, "x", [ArmSpec("a", "seeds", preset="fast"), ArmSpec("b", "all")], cfg,
                                      data_dir=tmp_path)
    with pytest.raises(UserError, match="has no prompts"):
        experiments.create_experiment(store, "x", [ArmSpec("a", "seeds"), ArmSpec("b", "all")],
                                      ExperimentConfig(testset="other"), data_dir=tmp_path)
    with pytest.raises(UserError, match="baseline 'c' is neither"):
        experiments.create_experiment(store, "x", [ArmSpec("a", "seeds"), ArmSpec("b", "all")],
                                      ExperimentConfig(testset=testset, pairs="baseline", baseline="c"),
                                      data_dir=tmp_path)
    with pytest.raises(UserError, match="judge needs both"):
        ExperimentConfig(testset=testset, judge_model="m")
    assert store.list_experiments() == []


def test_a_failed_arm_names_its_step_and_is_retried_alone(store, tmp_path, capsys):
    from pipeline.__main__ import main as cli

    _forest(store)
    _testset(store, tmp_path, 2)
    _recipes(store)
    db = str(store.path)
    assert cli(["experiment", "--db", db, "create", "broken", "--arm", "a=seeds", "--arm", "b=all:no-such-model",
                "--testset", "tiny", "--train", "max_steps=1", "max_length=64", "--max-tokens", "6",
                "--out", str(tmp_path / "exp")]) == 0
    assert cli(["experiment", "--db", db, "launch", "broken", "--wait"]) == 1
    out = capsys.readouterr().out
    exp = store.experiment("broken")
    assert exp["status"] == "failed" and "arm 'b' failed at train" in exp["error"], exp["error"]
    assert "no-such-model" in out
    view = {a["name"]: a for a in experiments.status(store, "broken")["arms"]}
    assert view["a"]["status"] == "done" and (view["b"]["step"], view["b"]["status"]) == ("train", "failed")
    with pytest.raises(UserError, match="has not failed"):
        experiments.retry(store, "broken", "a")
    arm_b = next(a for a in store.experiment_arms(exp["id"]) if a["name"] == "b")
    store.update_arm(arm_b["id"], base_model="tiny-llama")  # the fix
    a_runs = {k: v for k, v in next(a for a in store.experiment_arms(exp["id"]) if a["name"] == "a").items()
              if k.endswith("_run_id")}
    assert cli(["experiment", "--db", db, "retry", "broken", "--arm", "b"]) == 0
    _wait(lambda: store.experiment("broken")["status"] != "running", 300, "the retried experiment")
    exp = store.experiment("broken")
    assert exp["status"] == "done", exp["error"]
    arms = {a["name"]: a for a in store.experiment_arms(exp["id"])}
    assert {k: arms["a"][k] for k in a_runs} == a_runs  # arm a was not run again
    assert arms["b"]["attempt"] == 1 and store.get_run(arms["b"]["export_run_id"])["status"] == "done"
    assert len(store.campaign_items(exp["campaign_id"])) == 2
    assert cli(["experiment", "--db", db, "report", "broken"]) == 0
    assert "No human judgments yet" in capsys.readouterr().out
