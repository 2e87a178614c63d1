"""Train tab through the real app over HTTP: admins only (checked on the server), export-and-launch,
live progress, Stop with a checkpoint, Delete; and the form parser."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from eval_ui.train import EXPORT_NOW, EXPORTED, MODELS, OVERRIDES, TrainForm
from tests.uihelpers import call_api, http_login, make_forest, make_user, start_app, stop_app
from wizardlab.errors import UserError
from wizardlab import jobs
from wizardlab.jobs import pid_alive
from wizardlab.training import PRESETS, latest_checkpoint

TINY = "tiny-llama (random, for smoke tests)"


def form_values(data_source=EXPORT_NOW, data_file=None, evolve_run=None, model=TINY, model_path="", preset="cpu-smoke",
                **numbers) -> list:
    """The Train button's inputs in order, with the preset's numbers unless overridden."""
    p = PRESETS[preset]
    values = {name: numbers.get(name, p.get(name, {"seed": 42, "nproc": 1}.get(name))) for name, _, _ in OVERRIDES}
    return [data_source, data_file, evolve_run, model, model_path, preset, p["scheduler"],
            {None: "none", 2: "zero2", 3: "zero3"}[p["deepspeed"]], False, p["gradient_checkpointing"],
            p["precision"], *values.values()]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainui")
    base_url, admin, password, ctx = start_app(tmp, cache_dir=str(tmp / "cache"))
    make_user(ctx, "ann", "ann-pass-123", "annotator")
    yield base_url, admin, password, ctx
    for run in ctx.store().list_runs("train"):  # never leave a training job behind a failed test
        jobs.kill(ctx.store(), run["id"])
    stop_app(ctx)


def test_form_parses_into_a_config(tmp_path):
    form = TrainForm.parse(*form_values(EXPORTED, "d.json", preset="wizardlm", max_steps=7))
    cfg = form.config("d.json", str(tmp_path / "o"))
    assert (cfg.model, cfg.max_steps, cfg.deepspeed, cfg.learning_rate) == ("tiny-llama", 7, 3, 2e-5)
    values = form_values(EXPORTED, "d.json", preset="wizardlm")
    values[7] = "none"
    assert TrainForm.parse(*values).config("d.json", "o").deepspeed is None
    with pytest.raises(UserError, match="whole number"):
        TrainForm.parse(*form_values(max_steps=2.5))
    with pytest.raises(UserError, match="directory or hub id"):
        TrainForm.parse(*form_values(model="Local directory or hub id"))
    with pytest.raises(UserError, match="exported data file"):
        TrainForm.parse(*form_values(EXPORTED, ""))
    assert set(MODELS.values()) == {"embedded", "tiny-llama", None}


def test_annotator_is_refused_on_the_server(app):
    base_url, _, _, ctx = app
    ann = http_login(base_url, "ann", "ann-pass-123")
    for api, data in (("train_launch", form_values()), ("train_stop", [1]), ("train_resume", [1]),
                      ("train_delete", [1, True])):
        event, payload = call_api(ann, api, data)
        assert event == "error" and "Only admins" in str(payload), (api, payload)
    assert ctx.store().list_runs("train") == []


def _wait(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_admin_exports_launches_watches_stops_and_deletes(app):
    base_url, admin, password, ctx = app
    store = ctx.store()
    evolve = make_forest(store, [{"instruction": f"Seed task {i}", "input": "", "response": f"Answer {i}"}
                                 for i in range(6)],
                         [[{"status": "kept", "instruction": f"Harder task {i}", "response": f"Longer answer {i}"}
                           for i in range(6)]])
    adm = http_login(base_url, admin, password)
    event, payload = call_api(adm, "train_launch", form_values(evolve_run=evolve, max_steps=5000, save_steps=5000,
                                                               max_length=64))
    assert event == "complete", payload
    run = store.list_runs("train")[0]
    data = json.loads(Path(run["config"]["data"]).read_text())  # the curated set, exported at launch
    assert len(data) == 12 and {"Harder task 0", "Seed task 0"} <= {d["instruction"] for d in data}
    assert run["status"] == "running" and run["created_by"] == admin

    _wait(lambda: store.get_run(run["id"])["progress"].get("step", 0) >= 2, 120, "two steps")
    event, payload = call_api(adm, "train_progress", [run["id"]])
    assert event == "complete"
    status_html, plot = payload[0], payload[1]
    assert "running" in status_html and "Tokens/s" in status_html
    assert plot["columns"] == ["step", "loss"] and len(plot["data"]) >= 2  # the loss curve's points
    assert [p[0] for p in plot["data"]] == list(range(1, len(plot["data"]) + 1))

    event, payload = call_api(adm, "train_stop", [run["id"]])
    assert event == "complete" and "cancelling" in str(payload)
    done = _wait(lambda: (r := store.get_run(run["id"]))["status"] == "cancelled" and not pid_alive(r["pid"]) and r,
                 60, "the stop")
    out = Path(done["config"]["output_dir"])
    assert latest_checkpoint(out) is not None

    event, payload = call_api(adm, "train_delete", [run["id"], False])
    assert event == "error" and "yes, delete" in str(payload) and out.exists()
    event, payload = call_api(adm, "train_delete", [run["id"], True])
    assert event == "complete", payload
    assert store.get_run(run["id"]) is None and not out.exists()


def test_browser_preset_fills_settings_and_command_preview(app):
    """In Chromium: choosing the wizardlm preset fills the settings and the preview shows the launcher."""
    from tests.uihelpers import browser, login

    base_url, admin, password, _ = app
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1400})
        login(page, base_url, admin, password)
        page.get_by_role("tab", name="Train").click()
        page.get_by_label(TINY).check()
        page.wait_for_function("document.querySelector('#wl-train-command').textContent.includes('tiny-llama')",
                               timeout=30_000)
        assert "train_sft.py" in page.locator("#wl-train-command").text_content()
        page.get_by_label("wizardlm").check()
        page.wait_for_function("document.querySelector('#wl-train-command').textContent.includes('--preset wizardlm')",
                               timeout=30_000)
        command = page.locator("#wl-train-command").text_content()
        assert "torchrun" in command or "deepspeed" in command  # ZeRO-3 needs a distributed launcher
        assert "<time of launch>-tiny-llama" in command  # not a time that the launched run will not have
        page.get_by_text("Settings (filled from the preset)").click()
        assert page.locator("#wl-train-max_length input").input_value() == "2048"
        assert page.locator("#wl-train-learning_rate input").input_value() == "0.00002"
