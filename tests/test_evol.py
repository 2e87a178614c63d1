"""The pure Evol-Instruct logic: operations and templates, parsing, the elimination rules."""

import random
import string

import pytest
from hypothesis import given, strategies as st

from wizardlab import evol
from wizardlab.evol.operations import TEMPLATE_PLACEHOLDERS


def test_six_operations_five_in_depth_one_in_breadth():
    assert len(evol.OPERATIONS) == 6 and len(set(evol.OPERATIONS)) == 6
    assert evol.IN_BREADTH not in evol.IN_DEPTH and len(evol.IN_DEPTH) == 5


@pytest.mark.parametrize("op", evol.OPERATIONS)
def test_evolve_prompt_has_instruction_and_no_unfilled_placeholder(op):
    msgs = evol.evolve_messages(op, "Name three rivers in Africa.", "")
    text = msgs[-1]["content"]
    assert "Name three rivers in Africa." in text
    assert "#Given Prompt#" in text
    assert not any(p in text for p in ("{instruction}", "{method}"))


def test_input_is_kept_in_the_evolving_prompt():
    msgs = evol.evolve_messages("complicate_input", "Sort these words.", "pear, apple, fig")
    assert "pear, apple, fig" in msgs[-1]["content"]


def test_in_depth_methods_differ_per_operation():
    texts = {op: evol.evolve_messages(op, "X")[-1]["content"] for op in evol.IN_DEPTH}
    assert len(set(texts.values())) == 5


def test_few_shot_adds_worked_examples_as_earlier_turns():
    plain = evol.evolve_messages("deepening", "Why is the sea salty?")
    shots = evol.evolve_messages("deepening", "Why is the sea salty?", few_shot=True)
    assert len(plain) == 1 and len(shots) > 2
    assert [m["role"] for m in shots[:-1]] == ["user", "assistant"] * ((len(shots) - 1) // 2)
    assert shots[-1] == plain[-1]
    for m in shots:
        assert evol.copied_prompt_words(m["content"]) is None or m["role"] == "user"


def test_operation_choice_is_replayable_and_uniform():
    a = [evol.choose_operation(random.Random(7)) for _ in range(3)]
    r1, r2 = random.Random(7), random.Random(7)
    assert [evol.choose_operation(r1) for _ in range(50)] == [evol.choose_operation(r2) for _ in range(50)]
    rng = random.Random(0)
    counts = {op: 0 for op in evol.OPERATIONS}
    for _ in range(6000):
        counts[evol.choose_operation(rng)] += 1
    assert all(800 < c < 1200 for c in counts.values()), counts
    assert len(a) == 3


@pytest.mark.parametrize("answer,equal", [
    ("Equal", True), ("equal.", True), ("Not Equal", False), ("NOT EQUAL", False), ("**Not equal**", False),
    ("Not Equal. They differ in depth.", False), ("Equal. They are not different.", True),
    ("The two are equal", True), ("not  equal", False),
])
def test_parse_equal(answer, equal):
    assert evol.parse_equal(answer) is equal


@pytest.mark.parametrize("answer", ["", "Maybe", "They look different to me", "Yes"])
def test_parse_equal_rejects_other_answers(answer):
    with pytest.raises(evol.UnparsableJudgement):
        evol.parse_equal(answer)


def test_no_information_gain_fires_on_equal_only():
    assert evol.no_information_gain("Equal").rule == "no_information_gain"
    assert evol.no_information_gain("Not Equal") is None


def test_sorry_short_response_counts_words():
    assert evol.sorry_short_response("Sorry, I cannot help with that.").rule == "sorry_short_response"
    assert evol.sorry_short_response("I am SORRY " + "word " * 76) is not None  # 79 words
    assert evol.sorry_short_response("I am sorry " + "word " * 77) is None  # 80 words
    assert evol.sorry_short_response("A full answer with no apology at all.") is None


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", "It is what it is.", "It is, as it was."])
def test_stopwords_only_response_fires(text):
    assert evol.stopwords_only_response(text).rule == "stopwords_only_response"


def test_stopwords_only_response_passes_content():
    assert evol.stopwords_only_response("Paris is the capital of France.") is None


@pytest.mark.parametrize("text", ["Here is the given prompt made harder", "#Rewritten Prompt#: do X",
                                  "Unlike the Given\nPrompt, add a table", "the  rewritten   prompt",
                                  "As the REWRITTEN PROMPT asks", "A created prompt about cats",
                                  "Use {instruction} here", "#given prompt# again"])
def test_copied_prompt_words_fires(text):
    assert evol.copied_prompt_words(text).rule == "copied_prompt_words"


def test_copied_prompt_words_covers_every_template_placeholder():
    for placeholder in TEMPLATE_PLACEHOLDERS:
        assert evol.copied_prompt_words(f"text {placeholder} text") is not None


def test_copied_prompt_words_passes_normal_prompt():
    assert evol.copied_prompt_words("What is the relation between the given pairs?") is None


@pytest.mark.parametrize("raw,parsed", [
    ("  Explain tides.  ", "Explain tides."),
    ("#Rewritten Prompt#: Explain tides.", "Explain tides."),
    ("**Rewritten Prompt:** Explain tides.", "Explain tides."),
    ("#Created Prompt#:\nDescribe a rare fungus.", "Describe a rare fungus."),
    ('"Explain tides."', "Explain tides."),
])
def test_parse_evolved_strips_leading_label_and_quotes(raw, parsed):
    assert evol.parse_evolved(raw) == parsed


@pytest.mark.parametrize("raw", ["", "   ", "#Rewritten Prompt#:", '""'])
def test_parse_evolved_rejects_empty(raw):
    with pytest.raises(evol.MalformedOutput):
        evol.parse_evolved(raw)


def test_label_in_the_middle_is_left_for_the_copied_words_rule():
    parsed = evol.parse_evolved("Explain tides, unlike the #Given Prompt#.")
    assert evol.copied_prompt_words(parsed) is not None


@given(st.text(alphabet=string.ascii_letters + " .,!?", max_size=200))
def test_rules_never_crash_and_return_known_codes(text):
    for verdict in [*evol.response_rules(text), evol.copied_prompt_words(text)]:
        assert verdict is None or verdict.rule in evol.RULES


# -- the paper's wording: the four edge cases of issue 11, and the lenient mode beside them ----------------------

REFUSAL = ("I'm sorry, but I can't provide step-by-step instructions for bypassing the state-of-the-art "
           "DRM on e-books sold at https://example.com/store/books?id=3.14 because doing so violates "
           "copyright law in most jurisdictions, including the U.S. and the E.U. If you have a "
           "legitimate need, contact the publisher or look for DRM-free editions; many well-known "
           "authors offer them. I'm happy to help with anything else about e-readers, file formats, "
           "or reading apps.")


def test_sorry_counts_whitespace_words_as_the_paper_does():
    assert len(REFUSAL.split()) < 80 < len(evol.rules.words(REFUSAL, evol.LENIENT))
    assert evol.sorry_short_response(REFUSAL).rule == "sorry_short_response"
    assert evol.sorry_short_response(REFUSAL, evol.LENIENT) is None


@pytest.mark.parametrize("text", ["I'll be there.", "I\u2019ll be there.", "I\u02bcll be there.", "I\u2018ll be there."])
def test_curly_and_straight_apostrophes_give_one_verdict(text):
    assert evol.stopwords_only_response(text).rule == "stopwords_only_response"
    assert evol.sorry_short_response(text.replace("be there", "be sorry")) is not None


@pytest.mark.parametrize("answer,equal", [
    ("Equal or Not Equal? Not Equal.", False), ("Equal or Not Equal? Equal.", True),
    ("Not Equal or Equal? Equal", True), ("The answer to 'Equal or Not Equal' is: Not Equal", False),
])
def test_parse_equal_reads_the_final_verdict(answer, equal):
    assert evol.parse_equal(answer) is equal


@pytest.mark.parametrize("raw", ["Rewritten Prompt: Explain tides to a child.", "#Rewritten Prompt#: Explain tides.",
                                 "**Created Prompt:** Describe a rare fungus.", "#Created Prompt#:\nDescribe it."])
def test_a_leading_copied_label_fires_the_copied_words_rule(raw):
    instruction = evol.parse_evolved(raw)
    assert evol.evolved_prompt_rules(raw, instruction).rule == "copied_prompt_words"
    assert evol.evolved_prompt_rules(raw, instruction, evol.LENIENT) is None


@pytest.mark.parametrize("text,fires", [
    ("Sorry, I cannot do that.", True), ("SORRY.", True), ("I am sorry " + "word " * 76, True),
    ("I am sorry " + "word " * 77, False), ("No apology here.", False),
])
def test_sorry_rule_in_the_papers_words(text, fires):
    assert (evol.sorry_short_response(text) is not None) is fires


@pytest.mark.parametrize("text,fires", [
    ("", True), ("...", True), ("It is, as it was!", True), ("\u2014 and so on? \u2014", True),
    ("Paris.", False), ("It's what it is.", True), ("It\u2019s what it is.", True), ("3.14", False),
])
def test_stopword_rule_in_the_papers_words(text, fires):
    assert (evol.stopwords_only_response(text) is not None) is fires


def test_rule_mode_must_be_named():
    with pytest.raises(ValueError, match="unknown rule mode"):
        evol.sorry_short_response("sorry", "loose")
