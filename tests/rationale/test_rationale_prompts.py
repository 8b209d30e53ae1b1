"""Prompt versions: v1 is frozen; few-shot versions render as alternating chat turns and fit the slot."""

from __future__ import annotations

import pytest

from lrsa.rationale.config import RationaleSettings
from lrsa.rationale.names import candidate_names, candidate_names_v2
from lrsa.rationale.prompts import (PROMPT_VERSION, TEMPLATES, _user_turn, finish, get_template, listed_names,
                                    text_messages, tidy_name_lines)

V1_SYSTEM = "You analyse social media posts. Answer in two or three short sentences."
V1_USER = ("Post: \"Chuck Bass is everything # MCM\"\n"
           "Name the aspects in this post (people, organisations, products, places, events) and say "
           "whether the author feels positive, neutral or negative about each, and why.")


def test_v1_is_unchanged():
    assert text_messages("Chuck Bass is everything # MCM", "v1") == [
        {"role": "system", "content": V1_SYSTEM}, {"role": "user", "content": V1_USER}]


def test_default_version_is_the_settings_default_and_known():
    assert RationaleSettings().prompt_version == PROMPT_VERSION and PROMPT_VERSION in TEMPLATES


@pytest.mark.parametrize("version", [v for v, t in TEMPLATES.items() if t.examples])
def test_few_shot_versions_alternate_user_and_assistant_turns(version):
    t = get_template(version)
    messages = text_messages("Chuck Bass is everything # MCM", version)
    assert messages[0] == {"role": "system", "content": t.system}
    roles = [m["role"] for m in messages[1:]]
    assert roles == ["user", "assistant"] * len(t.examples) + ["user"]
    assert messages[-1]["content"] == _user_turn(t, "Chuck Bass is everything # MCM")
    for (post, answer), user, assistant in zip(t.examples, messages[1::2], messages[2::2]):
        assert user["content"] == _user_turn(t, post) and post in user["content"] and assistant["content"] == answer


def test_unknown_version_is_refused():
    with pytest.raises(ValueError, match="unknown prompt version"):
        text_messages("x", "v0")


def test_v3_lists_the_posts_candidate_names_in_every_user_turn():
    messages = text_messages("RT @ TPM : Court to censure Montana judge over rape comments", "v3")
    assert messages[-1]["content"] == ("Post: \"RT @ TPM : Court to censure Montana judge over rape comments\"\n"
                                       "Names: Court; Montana")
    assert messages[1]["content"].endswith("Names: Adele; O2; #concert")


def test_v3_answer_keeps_one_line_per_name_in_the_post():
    post = "RT @ TPM : Court to censure Montana judge over rape comments # law"
    answer = ("TPM: negative - a court case\nMontana: neutral - only reported\n\nMontana: positive - again\n"
              "Lakers: neutral - copied from an example\n#law: neutral - a tag\nno colon here")
    assert tidy_name_lines(answer, post) == \
        "TPM: negative - a court case\nMontana: neutral - only reported\n#law: neutral - a tag"
    assert finish("  " + answer + " ", post, "v3") == tidy_name_lines(answer, post)
    assert finish("  free text  ", post, "v1") == "free text"
    # nothing named from the post: the answer's first line, so a rationale is never empty
    assert tidy_name_lines("\nLakers: positive - x\nCeltics: neutral", post) == "Lakers: positive - x"


@pytest.mark.parametrize("text, names", [
    ("RT @ FundsOverBuns : Tyga went from pedophile to messing with cougars", ["Tyga"]),
    ("Pedro , shellacked , and ready to be sent off to Cooperstown .", ["Pedro", "Cooperstown"]),
    ("Have you heard about our # sale ? # Tribeca", ["Have", "#sale", "#Tribeca"]),  # a capitalised opener too
    ("The Career Night hosted by South Boston TEAM was a huge success !", ["Career Night", "South Boston TEAM"]),
    ("i love it here on Monday", []),
])
def test_candidate_names(text, names):
    assert candidate_names(text) == names


@pytest.mark.parametrize("text, names", [
    # @-mentions are names, the retweet's source is not
    ("RT @ BBCNews : Congrats to @ AshBarty on the title", ["AshBarty"]),
    ("Face timed the lil breh brehs @ BrandonRowland @ HunterRowland", ["Face", "BrandonRowland", "HunterRowland"]),
    # a skip word inside a run stays, one that opens a run of names starts it, a trailing one goes
    ("RT @ Number10gov : Theresa May has seen the Prime Minister", ["Theresa May", "Prime Minister"]),
    ("One Direction makes history tonight", ["One Direction"]),
    ("I love Apple Today", ["Apple"]),
    ("Spencer Tracy is in EVERY scene of FATHER OF THE BRIDE", ["Spencer Tracy", "EVERY", "FATHER OF THE BRIDE"]),
    # acronyms that are skip words in lower case, among ordinary words
    ("Kevin Folta is wrong , says WHO expert", ["Kevin Folta", "WHO"]),
    ("Congrats to the US team ! Can't wait # WorldCup", ["US", "#WorldCup"]),
    ("i love it here on Monday", []),
])
def test_candidate_names_v2(text, names):
    assert candidate_names_v2(text) == names


@pytest.mark.parametrize("version", ["v4", "v5"])
def test_v4_examples_answer_every_listed_name_in_order(version):
    """The examples teach one line per listed name: their answers name exactly the names the
    post's user turn lists (names v2), in that order, and each label is one of the three."""
    t = get_template(version)
    assert t.names == "v2" and t.name_lines
    labels = set()
    for post, answer in t.examples:
        lines = answer.splitlines()
        assert [x.split(":", 1)[0] for x in lines] == candidate_names_v2(post)
        labels |= {x.split(":", 1)[1].split(" - ")[0].strip() for x in lines}
        assert _user_turn(t, post).endswith("Names: " + "; ".join(candidate_names_v2(post)))
    assert labels == {"positive", "neutral", "negative"}


def test_answers_of_the_1_5b_are_parsed_into_name_lines():
    """Formats Qwen2.5-1.5B-Instruct writes: list markers, bold names, a repeated name, a name
    from the examples, blank lines, a label with no reason."""
    post = "RT @ BBCNews : Two injured as Tesla crashes into a shop in Leeds @ WYP"
    answer = ("1. **Tesla**: negative - its car crashed\n\n- Leeds: neutral - the city\n"
              "* Tesla: positive - repeated\nRyanair: negative - copied from an example\n2) WYP: neutral")
    assert finish(answer, post, "v5") == "Tesla: negative - its car crashed\nLeeds: neutral - the city\nWYP: neutral"
    from lrsa.rationale.verdicts import verdict

    rationale = finish(answer, post, "v5")
    assert [verdict(rationale, n) for n in ("Tesla", "Leeds", "WYP", "Ryanair")] == \
        ["negative", "neutral", "neutral", "none"]


def test_every_prompt_fits_the_default_slot_with_smollm2s_tokenizer():
    from lrsa.rationale import DEFAULT_MODEL
    from lrsa.rationale.loading import default_cache_dir
    from lrsa.rationale.prompts import render

    folder = default_cache_dir() / DEFAULT_MODEL
    if not (folder / "tokenizer.json").exists():
        pytest.skip("SmolLM2 not converted here (the engine converts it on first use)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    s = RationaleSettings()
    longest = "RT @ someone : " + " ".join(["Word"] * 40) + " # Tag # Other # More"  # longer than any dev tweet
    for version in TEMPLATES:
        assert len(render(tok, text_messages(longest, version))) <= s.max_len - s.max_new_tokens, version


def test_engine_applies_the_versions_finish(monkeypatch):
    from lrsa.rationale.engine import RationaleEngine, RationaleRequest
    from rationale_helpers import tiny_loaded

    settings = RationaleSettings(device="cpu", slots=2, max_len=448, max_new_tokens=6, threads=1, prompt_version="v3")
    engine = RationaleEngine(settings, loaded=tiny_loaded())
    seen = []
    monkeypatch.setattr("lrsa.rationale.engine.finish", lambda a, p, v: seen.append((p, v)) or "done")
    [r] = engine.generate([RationaleRequest("Chuck Bass is everything # MCM")])
    assert r.text == "done" and seen == [("Chuck Bass is everything # MCM", "v3")]


def test_a_named_offline_model_brings_its_measured_prompt_version():
    from lrsa import offline_models

    qwen = "qwen2.5-coder-1.5b-instruct"
    assert offline_models.MODELS[qwen].prompt_version in TEMPLATES
    assert RationaleSettings(model=qwen).prompt_version == offline_models.MODELS[qwen].prompt_version
    assert RationaleSettings(model=qwen, prompt_version="v3").prompt_version == "v3"  # a set version wins
    assert RationaleSettings(model="HuggingFaceTB/SmolLM2-135M-Instruct").prompt_version == PROMPT_VERSION
    with pytest.raises(ValueError, match="unknown prompt version 'v0'"):
        RationaleSettings(prompt_version="v0")


def test_names_answered_counts_the_listed_names_with_a_line_of_their_own():
    from training.rationale_quality import names_answered

    posts = ["Congrats to @ AshBarty on the title at Wimbledon", "RT @ CNN : Obama visits Kenya"]
    assert listed_names(posts[0], "v6") == ["AshBarty", "Wimbledon"] and listed_names(posts[0], "v2") == []
    rationales = ["AshBarty: positive - congratulated", "Obama: neutral - a report\nKenya: neutral\nCNN: neutral"]
    assert names_answered(posts, rationales, "v6") == {"listed": 4, "answered": 3, "share": 75.0}
    assert names_answered(posts, [None, None], "v6")["answered"] == 0
    assert names_answered(posts, rationales, "v2") is None  # a prompt that lists no names
