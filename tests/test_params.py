"""Generation settings per stage (`wizardlab.llm.params`): defaults, overrides, the CLI."""

import argparse

import pytest

from wizardlab.errors import UserError
from wizardlab.evol.engine import stage_sampling
from wizardlab.llm import params
from wizardlab.llm.local import LocalBackend
from wizardlab.llm.openai_backend import OpenAIBackend


def test_endpoints_default_to_the_official_code():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
    for stage in params.STAGES:
        assert params.for_backend(stage, backend) == params.Sampling(1.0, 0.95, 2048)


def test_the_embedded_base_model_keeps_its_short_budgets(tmp_path):
    backend = LocalBackend.embedded(cache_dir=tmp_path)  # not loaded: few_shot is known from the name
    assert backend.in_process and backend.few_shot
    budgets = {stage: s.max_tokens for stage, s in stage_sampling(backend).items()}
    assert budgets == {"evolve": 96, "respond": 192, "equal": 4}
    assert stage_sampling(backend)["equal"].temperature == 0 and stage_sampling(backend)["respond"].top_p is None
    assert params.for_backend("score", backend).max_tokens == 16
    assert {s.max_tokens for s in stage_sampling(backend, cap=50).values()} == {50, 4}


def test_overrides_win_and_the_cap_comes_last():
    s = params.for_stage("respond", in_process=False, few_shot=False,
                         overrides={"respond": {"temperature": 0.2, "max_tokens": 4000}}, cap=3000)
    assert s == params.Sampling(0.2, 0.95, 3000)


@pytest.mark.parametrize("overrides,match", [
    ({"judge": {"temperature": 3}}, "temperature"), ({"evolve": {"top_p": 0}}, "top_p"),
    ({"evolve": {"max_tokens": 0}}, "max_tokens"), ({"nope": {"top_p": 0.5}}, "unknown generation stage"),
    ({"evolve": {"top_k": 5}}, "unknown generation setting"),
])
def test_bad_overrides_are_one_line_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        params.check_overrides(overrides)


def test_command_line_options():
    parser = argparse.ArgumentParser()
    params.add_arguments(parser, params.EVOLVE_STAGES)
    args = parser.parse_args(["--top-p", "0.9", "--sampling", "equal:temperature=0", "--sampling",
                              "respond:max-tokens=4096"])
    assert params.from_arguments(args, params.EVOLVE_STAGES) == {
        "evolve": {"top_p": 0.9}, "respond": {"top_p": 0.9, "max_tokens": 4096},
        "equal": {"top_p": 0.9, "temperature": 0.0}}
    with pytest.raises(UserError, match="STAGE:KEY=VALUE"):
        params.from_arguments(parser.parse_args(["--sampling", "judge:temperature=0"]), params.EVOLVE_STAGES)


def test_the_evolve_tab_form_parses_generation_settings_and_rules():
    from eval_ui.evolve import DEMO, BatchForm

    form = BatchForm.parse(DEMO, None, 2, 4, "", "", 0, 0, 0.5, None, 1024, "equal:temperature=0, respond:top_p=0.9",
                           "lenient")
    assert form.rules == "lenient" and form.sampling == {
        "evolve": {"temperature": 0.5, "max_tokens": 1024},
        "respond": {"temperature": 0.5, "max_tokens": 1024, "top_p": 0.9},
        "equal": {"temperature": 0.0, "max_tokens": 1024}}
    assert BatchForm.parse(DEMO, None, 2, 4, "", "", 0, 0).sampling == {}
    with pytest.raises(UserError, match="STAGE:KEY=VALUE"):
        BatchForm.parse(DEMO, None, 2, 4, "", "", 0, 0, None, None, None, "equal=0")
