"""Identity leaks before blinding: find answers that say which model or vendor wrote them.

FastChat's `clean_battle_data.py` drops Arena votes whose answers name a model; here the scan
runs when a campaign is created, over every output it shows, and the lead edits, drops or
keeps each hit before anything reaches annotators (`campaigns.resolve_identity`).

A hit is either a model name anywhere (ChatGPT, GPT-4, Claude, Llama, WizardLM ... and the
names of the campaign's own models), or a vendor named in a self-identifying sentence
("as an AI model developed by OpenAI", "I was trained by Google"): vendor names alone (Google,
Meta, Microsoft) are ordinary words in answers and are not flagged.
"""

from __future__ import annotations

import re

MODEL_NAMES = ("ChatGPT", "GPT-3.5", "GPT-3", "GPT-4o", "GPT-4", "GPT4", "InstructGPT", "Claude", "Gemini", "Bard",
               "PaLM", "LLaMA", "Llama-2", "Llama 2", "Llama-3", "Llama 3", "Mistral", "Mixtral", "Vicuna", "Alpaca",
               "WizardLM", "WizardCoder", "Qwen", "DeepSeek", "ChatGLM", "Baichuan", "InternLM", "Falcon-",
               "Gemma", "Phi-2", "Phi-3", "StableLM", "Koala", "Dolly", "Grok", "Command R", "Ernie Bot")
VENDORS = ("OpenAI", "Anthropic", "Google", "DeepMind", "Meta AI", "Meta", "Microsoft", "Alibaba", "Mistral AI",
           "Zhipu", "Baidu", "Tsinghua", "LMSYS", "Stanford", "Databricks", "Stability AI", "xAI", "Cohere",
           "Hugging Face", "TII", "01.AI", "Tencent", "ByteDance")
_SELF = re.compile(
    r"\b(?:as an? (?:ai|artificial intelligence|language model|large language model|llm|assistant|chatbot)"
    r"|i am an? (?:ai|language model|large language model|assistant|chatbot)"
    r"|i'm an? (?:ai|language model|large language model|assistant|chatbot)"
    r"|(?:developed|created|trained|built|made|designed|released|fine-tuned) by"
    r"|my (?:creators?|developers?) (?:is|are|at)|i was (?:developed|created|trained|built|made))\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _word(name: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w])", re.I)


_MODELS = [(n, _word(n)) for n in MODEL_NAMES]
_VENDORS = [(n, _word(n)) for n in VENDORS]


def model_tokens(models: list[str]) -> list[str]:
    """The campaign's own model ids worth looking for: 'org/qwen2.5-7b' -> 'qwen2.5-7b'; plain words
    ('base', 'evolved') are left out, they are everyday words in answers."""
    out = []
    for m in models:
        last = m.split("/")[-1].strip()
        if len(last) >= 4 and re.search(r"\d", last) and re.search(r"[A-Za-z]", last) and last not in out:
            out.append(last)
    return out


def find(text: str, own_models: list[str] = ()) -> tuple[str, str] | None:
    """The first self-identification in `text`: (the name matched, the sentence around it), or None."""
    names = _MODELS + [(n, _word(n)) for n in model_tokens(list(own_models))]
    for sentence in _SENTENCE.split(text or ""):
        if not sentence.strip():
            continue
        for name, pat in names:
            if pat.search(sentence):
                return name, sentence.strip()[:300]
        if _SELF.search(sentence):
            for name, pat in _VENDORS:
                if pat.search(sentence):
                    return name, sentence.strip()[:300]
    return None


def scan(outputs: list[dict], own_models: list[str] = ()) -> list[tuple[int, str, str]]:
    """[(output id, match, context)] for every output in `outputs` ({id, text}) that identifies itself."""
    hits = []
    for o in outputs:
        hit = find(o["text"], own_models)
        if hit:
            hits.append((o["id"], *hit))
    return hits
