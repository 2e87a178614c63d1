"""The six Evol-Instruct operations and the messages they send to the LLM.

Templates are data files in `templates/`, loaded once with importlib.resources. Base
models (`few_shot=True`) get worked examples as earlier user/assistant turns.
Operation choice uses an injected `random.Random`, never the global RNG.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from importlib.resources import files

IN_DEPTH = ("add_constraints", "deepening", "concretizing", "increase_reasoning", "complicate_input")
IN_BREADTH = "in_breadth"
OPERATIONS = (*IN_DEPTH, IN_BREADTH)

# Placeholders our templates use; copying one into an evolved prompt is a failure too.
TEMPLATE_PLACEHOLDERS = ("{instruction}", "{method}", "{parent}", "{child}", "#Created Prompt#")


@lru_cache(maxsize=None)
def template(name: str) -> str:
    return files("wizardlab.evol").joinpath("templates", name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _json(name: str) -> dict:
    return json.loads(template(name))


def choose_operation(rng: random.Random) -> str:
    """Uniform over the six operations."""
    return rng.choice(OPERATIONS)


def prompt_text(instruction: str, input_text: str = "") -> str:
    """An instruction as the LLM sees it: the input, if any, follows the instruction."""
    return f"{instruction}\n\n{input_text}" if input_text and input_text.strip() else instruction


def _evolve_user(operation: str, given: str) -> str:
    if operation == IN_BREADTH:
        return template("in_breadth.txt").replace("{instruction}", given)
    method = _json("methods.json")[operation]
    return template("in_depth.txt").replace("{method}", method).replace("{instruction}", given)


def _with_examples(examples: list, make_user, final_user: str) -> list[dict]:
    messages: list[dict] = []
    for example in examples:
        messages.append({"role": "user", "content": make_user(*example[:-1])})
        messages.append({"role": "assistant", "content": example[-1]})
    messages.append({"role": "user", "content": final_user})
    return messages


def evolve_messages(operation: str, instruction: str, input_text: str = "", few_shot: bool = False) -> list[dict]:
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    final = _evolve_user(operation, prompt_text(instruction, input_text))
    if not few_shot:
        return [{"role": "user", "content": final}]
    return _with_examples(_json("few_shot.json")[operation], lambda g: _evolve_user(operation, g), final)


def respond_messages(instruction: str, input_text: str = "", few_shot: bool = False) -> list[dict]:
    final = prompt_text(instruction, input_text)
    if not few_shot:
        return [{"role": "user", "content": final}]
    return _with_examples(_json("few_shot.json")["respond"], lambda g: g, final)


def _equal_user(parent: str, child: str) -> str:
    return template("equal.txt").replace("{parent}", parent).replace("{child}", child)


def equal_messages(parent: str, child: str, few_shot: bool = False) -> list[dict]:
    final = _equal_user(parent, child)
    if not few_shot:
        return [{"role": "user", "content": final}]
    return _with_examples(_json("few_shot.json")["equal"], _equal_user, final)
