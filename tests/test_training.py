"""Training: prompt masking, data validation, config/presets/DeepSpeed/argv, and the real job path.

The job tests run the real pipeline/train_sft.py in subprocesses on the CPU with
`tiny-llama`: launch as a job, progress file, Stop (checkpoint, cancelled), Resume
(continues from the checkpoint step), a loadable model; and a 2-process DeepSpeed ZeRO-3
run through `python -m pipeline train`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from wizardlab.errors import UserError
from wizardlab.training import (IGNORE_INDEX, Hardware, SFTCollator, build_argv, deepspeed_config, encode_example,
                                format_prompt, latest_checkpoint, launch_training, load_examples, make_config,
                                read_progress, resolve_model, resolve_precision, resume_training,
                                stop_training)
from wizardlab.training.config import SCRIPT, config_from_args, config_to_argv
from wizardlab.training.launch import delete_training
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tokenizer(cache_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model("tiny-llama", cache_dir))


@pytest.fixture(scope="module")
def alpaca_file(tmp_path_factory):
    """The 175 Alpaca seed tasks as an Alpaca JSON export (instruction, input, output)."""
    seeds = SHARED_DATA / "seeds" / "alpaca_seed_tasks.jsonl"
    if not seeds.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    rows = [json.loads(line) for line in seeds.open()]
    items = [{"instruction": r["instruction"], "input": r["instances"][0]["input"],
              "output": r["instances"][0]["output"]} for r in rows]
    path = tmp_path_factory.mktemp("data") / "alpaca.json"
    path.write_text(json.dumps(items))
    return path


# -- prompt and masking -------------------------------------------------------------------

def test_prompt_template_follows_wizardlm():
    assert format_prompt("Add 2 and 3.") == "Add 2 and 3.\n\n### Response:"
    assert format_prompt("Translate.", "Bonjour") == "Translate.\n\nBonjour\n\n### Response:"


def test_labels_mask_the_prompt_and_keep_the_response(tokenizer):
    example = {"instruction": "Name a colour.", "input": "Think of the sky", "output": "Blue is a colour."}
    enc = encode_example(tokenizer, example, max_length=256)
    prompt_len = 1 + len(tokenizer(format_prompt(example["instruction"], example["input"]),
                                   add_special_tokens=False)["input_ids"])  # + BOS
    ids, labels = enc["input_ids"], enc["labels"]
    assert len(ids) == len(labels)
    assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tokenizer.eos_token_id and ids[0] == tokenizer.bos_token_id
    response = tokenizer.decode(labels[prompt_len:], skip_special_tokens=True)
    assert response == "blue is a colour."  # MiniLM's WordPiece lowercases
    assert "think of the sky" in tokenizer.decode(ids[:prompt_len])


def test_too_long_prompts_are_dropped_and_responses_truncated(tokenizer):
    example = {"instruction": "word " * 50, "input": "", "output": "answer " * 50}
    assert encode_example(tokenizer, example, max_length=20) is None
    enc = encode_example(tokenizer, example, max_length=60)
    assert len(enc["input_ids"]) == 60
    assert sum(1 for x in enc["labels"] if x != IGNORE_INDEX) == 60 - enc["labels"].count(IGNORE_INDEX) > 0


def test_collator_pads_with_ignored_labels_and_counts_real_tokens(tokenizer):
    a = encode_example(tokenizer, {"instruction": "Hi.", "output": "Hello there, friend."}, 64)
    b = encode_example(tokenizer, {"instruction": "A much longer instruction here.", "output": "Ok."}, 64)
    collator = SFTCollator(tokenizer.pad_token_id)
    batch = collator([a, b])
    width = max(len(a["input_ids"]), len(b["input_ids"]))
    assert batch["input_ids"].shape == (2, width)
    for row, item in enumerate((a, b)):
        n = len(item["input_ids"])
        assert batch["labels"][row, n:].tolist() == [IGNORE_INDEX] * (width - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert batch["input_ids"][row, n:].tolist() == [tokenizer.pad_token_id] * (width - n)
    assert collator.tokens == len(a["input_ids"]) + len(b["input_ids"])


@settings(max_examples=25, deadline=None)
@given(instruction=st.text(min_size=1, max_size=80).filter(str.strip),
       output=st.text(min_size=1, max_size=80).filter(str.strip), max_length=st.integers(8, 64))
def test_masking_property(tokenizer, instruction, output, max_length):
    enc = encode_example(tokenizer, {"instruction": instruction, "input": "", "output": output}, max_length)
    if enc is None:
        return
    ids, labels = enc["input_ids"], enc["labels"]
    assert len(ids) == len(labels) <= max_length
    first = next(i for i, x in enumerate(labels) if x != IGNORE_INDEX)  # at least one response token
    assert all(x == IGNORE_INDEX for x in labels[:first])
    assert labels[first:] == ids[first:]


# -- data file validation -----------------------------------------------------------------

def test_load_examples_reads_alpaca_json(alpaca_file):
    examples = load_examples(alpaca_file)
    assert len(examples) == 175 and all(e["instruction"] and e["output"] for e in examples)


@pytest.mark.parametrize("content, message", [
    ('[{"instruction": "a", "output": "b"}, {"instruction": "c"}]', "item 1: field 'output'"),
    ('{"instruction": "a", "output": "b"}\n\n{"instruction": "", "output": "b"}', "line 3: field 'instruction'"),
    ('[{"instruction": "a", "output": "b"},', "line 1: not valid JSON"),
    ('[]', "no examples"),
    ('[{"instruction": "a", "output": "b", "input": 3}]', "item 0: field 'input'"),
])
def test_bad_data_names_file_and_place(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError) as err:
        load_examples(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_examples_stream_across_chunks_and_encode_compactly(tmp_path, tokenizer):
    """A JSON list read in chunks smaller than one item gives the same examples, with the right line
    of a broken item; the encoded set rebuilds exactly what encode_example gives."""
    from wizardlab.training.data import encode_all, iter_examples

    items = [{"instruction": f"Task {i} " + "word " * i, "input": "", "output": f"Answer {i}."} for i in range(30)]
    path = tmp_path / "d.json"
    path.write_text("[\n" + ",\n".join(json.dumps(x) for x in items) + "\n]\n")
    assert list(iter_examples(path, chunk_chars=7)) == items
    bad = tmp_path / "bad.json"
    bad.write_text("[\n" + ",\n".join(json.dumps(x) for x in items[:5]) + ',\n{"instruction": oops}\n]')
    with pytest.raises(UserError, match="line 7: not valid JSON"):
        list(iter_examples(bad, chunk_chars=7))
    encoded, dropped = encode_all(tokenizer, iter_examples(path, chunk_chars=64), max_length=24)
    expected = [e for e in (encode_example(tokenizer, x, 24) for x in items) if e is not None]
    assert dropped == len(items) - len(expected) and len(encoded) == len(expected)
    assert [encoded[i] for i in range(len(encoded))] == expected


# -- config, presets, DeepSpeed, argv ---------------------------------------------------------

def test_presets():
    wiz = make_config("wizardlm", data="d.json", output_dir="o")
    assert (wiz.epochs, wiz.learning_rate, wiz.max_length, wiz.scheduler, wiz.warmup_ratio) == (3, 2e-5, 2048, "cosine", 0.03)
    assert wiz.deepspeed == 3 and wiz.gradient_checkpointing and wiz.precision == "auto"
    smoke = make_config("cpu-smoke", data="d.json", output_dir="o", max_steps=5)
    assert smoke.max_steps == 5 and smoke.deepspeed is None and smoke.precision == "fp32" and smoke.max_length <= 512


@pytest.mark.parametrize("overrides, message", [
    (dict(learning_rate=0), "learning_rate"), (dict(deepspeed=1), "ZeRO stage"), (dict(offload=True), "offload"),
    (dict(scheduler="cyclic"), "scheduler"), (dict(max_steps=0), "max_steps"), (dict(batch_size=0), "batch_size"),
    (dict(warmup_ratio=1.5), "warmup_ratio"), (dict(precision="int8"), "precision"), (dict(bogus=1), "bogus"),
])
def test_config_validation(overrides, message):
    with pytest.raises(UserError, match=message):
        make_config("cpu-smoke", data="d.json", output_dir="o", **overrides)


def test_precision_follows_hardware():
    cfg = make_config("wizardlm", data="d", output_dir="o")
    assert resolve_precision(cfg, Hardware(gpus=8, bf16=True)) == "bf16"
    assert resolve_precision(cfg, Hardware(gpus=2, bf16=False)) == "fp16"
    assert resolve_precision(cfg, Hardware(gpus=0)) == "fp32"
    with pytest.raises(UserError, match="needs a GPU"):
        resolve_precision(make_config("custom", data="d", output_dir="o", precision="bf16"), Hardware())


def test_deepspeed_config_zero3_gathers_weights_and_offloads():
    cfg = make_config("wizardlm", data="d", output_dir="o", offload=True, batch_size=4, grad_accum=2)
    ds = deepspeed_config(cfg, "bf16")
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"] and ds["optimizer"]["type"] == "AdamW"
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (4, 2)
    zero2 = deepspeed_config(make_config("wizardlm", data="d", output_dir="o", deepspeed=2), "fp16")["zero_optimization"]
    assert zero2["stage"] == 2 and "offload_optimizer" not in zero2 and "stage3_gather_16bit_weights_on_model_save" not in zero2


def test_launcher_follows_hardware(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    wiz = make_config("wizardlm", data="d.json", output_dir="o")
    gpu = build_argv(wiz, Hardware(gpus=8, bf16=True))
    assert Path(gpu[0]).name == "deepspeed" and gpu[1:3] == ["--num_gpus", "8"] and gpu[3] == str(SCRIPT)
    nodes = build_argv(make_config("wizardlm", data="d.json", output_dir="o", hostfile=str(hostfile)), Hardware(gpus=8))
    assert nodes[1:3] == ["--hostfile", str(hostfile)]
    cpu2 = build_argv(make_config("cpu-smoke", data="d.json", output_dir="o", nproc=2), Hardware(cpus=2))
    assert Path(cpu2[0]).name == "torchrun" and "--nproc_per_node" in cpu2 and cpu2[cpu2.index("--nproc_per_node") + 1] == "2"
    assert "--nproc" not in cpu2  # a launcher setting: torchrun would take it as its own flag
    plain = build_argv(make_config("cpu-smoke", data="d.json", output_dir="o"), Hardware(cpus=2), db="x.db")
    assert plain[:2] == [sys.executable, str(SCRIPT)] and plain[-2:] == ["--db", "x.db"]


def test_argv_round_trips_through_the_script_parser():
    sys.path.insert(0, str(REPO))
    from pipeline.train_sft import parse_args

    cfg = make_config("wizardlm", data="d.json", output_dir="o", model="tiny-llama", max_steps=7,
                      deepspeed=2, gradient_checkpointing=False, learning_rate=3e-4)
    again = config_from_args(parse_args(config_to_argv(cfg)))
    assert again.to_dict() == {**cfg.to_dict(), "nproc": 1}
    off = config_from_args(parse_args(config_to_argv(make_config("wizardlm", data="d", output_dir="o")) + ["--deepspeed", "none"]))
    assert off.deepspeed is None


def test_base_model_names(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (Path(resolve_model("tiny-llama", cache_dir)) / "config.json").is_file()
    with pytest.raises(UserError, match="hub is off"):
        resolve_model("Qwen/Qwen2.5-0.5B", cache_dir)
    with pytest.raises(UserError, match="no config.json"):
        resolve_model(str(tmp_path), cache_dir)
    with pytest.raises(UserError, match="does not exist"):
        resolve_model("no such thing", cache_dir)


# -- the real job path ----------------------------------------------------------------------

def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _finished(store, run_id):
    run = store.get_run(run_id)
    return run if run["status"] in ("done", "failed", "cancelled") and not _alive(run["pid"]) else None


def _alive(pid):
    from wizardlab.jobs import pid_alive

    return pid_alive(pid)


def test_job_stop_checkpoints_and_resume_finishes(store, tmp_path, alpaca_file, cache_dir):
    out = tmp_path / "run"
    cfg = make_config("cpu-smoke", data=str(alpaca_file), output_dir=str(out), max_steps=5000, save_steps=5000,
                      max_length=64, logging_steps=1)
    run_id = launch_training(store, cfg, cache_dir=cache_dir, hardware=Hardware(cpus=2))
    assert store.get_run(run_id)["status"] == "running"
    second = launch_training(store, make_config("cpu-smoke", data=str(alpaca_file), output_dir=str(tmp_path / "b")),
                             cache_dir=cache_dir, hardware=Hardware(cpus=2))
    assert store.get_run(second)["status"] == "queued"  # one training at a time
    assert stop_training(store, second) == "cancelled"

    _wait(lambda: len([r for r in read_progress(out) if "loss" in r]) >= 3, 120, "3 logged steps")
    assert stop_training(store, run_id) == "cancelling"
    run = _wait(lambda: _finished(store, run_id), 60, "the job to stop")
    assert run["status"] == "cancelled", run["error"]
    ckpt = latest_checkpoint(out)
    stopped_at = int(ckpt.name.split("-")[1])
    assert stopped_at >= 3 and not (out / "DONE").exists()
    assert {"event": "checkpoint", "step": stopped_at} == {k: v for k, v in read_progress(out)[-2].items()
                                                            if k in ("event", "step")}
    assert run["progress"]["step"] >= 1 and run["progress"]["loss"] > 0

    assert resume_training(store, run_id, cache_dir=cache_dir, hardware=Hardware(cpus=2),
                           max_steps=stopped_at + 3) == "running"
    run = _wait(lambda: _finished(store, run_id), 120, "the resumed job to finish")
    assert run["status"] == "done", run["error"]
    records = read_progress(out)
    starts = [r for r in records if r.get("event") == "start"]
    assert [s["step"] for s in starts] == [0, stopped_at]
    steps_after = [r["step"] for r in records[records.index(starts[1]):] if "loss" in r]
    assert steps_after == list(range(stopped_at + 1, stopped_at + 4))
    assert (out / "DONE").is_file() and run["config"]["model_dir"] == str(out.resolve())
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == stopped_at + 3

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run["config"]["model_dir"])
    assert model.config.model_type == "llama"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run["config"]["model_dir"])  # prompts as trained, via its chat template
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Add 2 and 3."}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat == tokenizer.bos_token + format_prompt("Add 2 and 3.")

    delete_training(store, run_id)
    assert store.get_run(run_id) is None and not out.exists()


def test_job_failure_in_the_child_is_recorded(store, tmp_path, alpaca_file, cache_dir):
    cfg = make_config("cpu-smoke", data=str(alpaca_file), output_dir=str(tmp_path / "f"), max_length=8)
    run_id = launch_training(store, cfg, cache_dir=cache_dir, hardware=Hardware(cpus=2))
    run = _wait(lambda: (r := _finished(store, run_id)) and r["exit_code"] is not None and r, 90, "the job to fail")
    assert run["status"] == "failed" and "longer than max_length 8" in run["error"]
    assert run["exit_code"] == 2


def _cli(*args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "pipeline", "train", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_deepspeed_zero3_two_processes_stop_resume(tmp_path, alpaca_file, cache_dir):
    """Acceptance: `python -m pipeline train --deepspeed zero3 --nproc 2` on the CPU; Stop reaches both
    ranks at the same step (ZeRO-3 checkpoint), --resume finishes, and the saved model loads."""
    from wizardlab.store import Store

    out, db = tmp_path / "ds", tmp_path / "ds.db"
    env = {**os.environ, "WIZARDLAB_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    common = ["--data", str(alpaca_file), "--model", "tiny-llama", "--out", str(out), "--preset", "cpu-smoke",
              "--max-length", "64", "--save-steps", "5000", "--deepspeed", "zero3", "--nproc", "2"]
    start = time.time()
    proc = _cli(*common, "--max-steps", "5000", "--db", str(db), "--detach", env=env)
    assert proc.returncode == 0 and "run 1: running" in proc.stdout, proc.stderr
    store = Store(db)
    try:
        _wait(lambda: len([r for r in read_progress(out) if "loss" in r]) >= 2, 180, "two steps on 2 ranks")
        assert "cancelling" in _cli("--db", str(db), "--cancel", "1", env=env).stdout
        run = _wait(lambda: _finished(store, 1), 120, "both ranks to stop")
    finally:
        store.close()
    assert run["status"] == "cancelled", run["error"]
    stopped_at = int(latest_checkpoint(out).name.split("-")[1])
    assert sorted(p.name for p in (out / f"checkpoint-{stopped_at}" / f"global_step{stopped_at}").iterdir()) == [
        f"zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" for r in (0, 1) for kind in ("model", "optim")]

    proc = _cli(*common, "--max-steps", str(stopped_at + 2), "--resume", env=env)
    log = (out / "train.log").read_text()
    assert proc.returncode == 0, proc.stderr[-2000:] + log[-3000:]
    print(f"DeepSpeed ZeRO-3, 2 CPU processes, run + stop + resume: {time.time() - start:.1f} s")
    records = read_progress(out)
    assert [r["step"] for r in records if r.get("event") == "start"] == [0, stopped_at]
    assert [r["step"] for r in records if "loss" in r][-2:] == [stopped_at + 1, stopped_at + 2]
    config = json.loads((out / "train_config.json").read_text())
    assert config["world_size"] == 2 and config["deepspeed"] == 3
    assert json.loads((out / "ds_config.json").read_text())["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-llama", cache_dir))
    weights = model.state_dict()
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in base.state_dict().items()}
    assert any(not torch.equal(weights[k], v) for k, v in base.state_dict().items())  # gathered, and trained


def test_cli_rejects_bad_data_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "x"}]')
    proc = subprocess.run([sys.executable, "-m", "pipeline", "train", "--data", str(bad), "--model", "tiny-llama",
                           "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {bad}: item 0: field 'output' is missing or empty"
