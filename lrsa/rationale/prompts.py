"""Versioned prompt templates for rationales. A rationale's text depends on its prompt, so the
version travels with every rationale (Result.model, the batch job's JSONL) and a change of
wording is a new version, never an edit of an old one."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lrsa.rationale.names import candidate_names, candidate_names_v2
from lrsa.rationale.verdicts import term_pattern

PROMPT_VERSION = "v3"  # the default (RationaleSettings.prompt_version); v1 before issue 18, see docs/rationale.md


@dataclass(frozen=True)
class PromptTemplate:
    system: str
    text: str   # user turn for the post's text; {text} is the post
    image: str  # user turn for a vision-language model describing the post's image; {text} is the post
    # few-shot turns before the post: (post text, the answer wanted), each rendered as a user turn
    # (`text` formatted with it) and an assistant turn; written for the project, not from a dataset
    examples: tuple[tuple[str, str], ...] = ()
    # the answer is "Name: sentiment - reason" lines: keep the first line per name, and only lines
    # whose name is in the post (a small model repeats lines and copies the examples' names)
    name_lines: bool = False
    # which candidate-name finder fills {names} (lrsa.rationale.names): "v1" candidate_names, "v2" candidate_names_v2
    names: str = "v1"
    # added to the logits of a word's first tokens (" neutral", "neutral", " Neutral", ...) while decoding:
    # a greedy small model over-answers one label; the bias is part of the version, as the wording is
    label_bias: tuple[tuple[str, float], ...] = ()


_IMAGE_V1 = ("The image was posted with the text: \"{text}\"\n"
             "Describe the image in one or two sentences: who or what is shown and the mood it conveys.")

_V4_SYSTEM = (
    "For each name listed, write one line: the name, the author's sentiment toward it, and a short "
    "reason. Sentiment is positive, negative or neutral.\n"
    "positive: the author praises, loves, thanks, congratulates, supports or looks forward to it, "
    "or the post is good news for it (a win, an award, a success, a birthday).\n"
    "negative: the author complains about, criticises, mocks or blames it, or the post is bad news "
    "for it (a loss, a death, an accident, a crime, a failure, a scandal).\n"
    "neutral: it is only named: a place, a venue, an account, a date, or a plain report with "
    "no good or bad news for it."
)

_V5_EXAMPLES = (
    ("Congrats to @ AshBarty on the title ! What a final at Wimbledon # tennis",
     "AshBarty: positive - the author congratulates her on the title\n"
     "Wimbledon: neutral - where the final was played\n#tennis: neutral - the topic tag"),
    ("Ryanair cancelled my flight again , stuck at Gatwick all night . Never again",
     "Ryanair: negative - it cancelled the author's flight\nGatwick: neutral - the airport where it happened"),
    ("RT @ BBCNews : Two injured as Tesla crashes into a shop in Leeds",
     "Tesla: negative - its car crashed and hurt people\nLeeds: neutral - the city of the crash"),
    ("Obama to visit Kenya in July . Can't wait to see Michelle !",
     "Obama: neutral - a plain report of his visit\nKenya: neutral - the country he visits\n"
     "Michelle: positive - the author is excited to see her"),
)

TEMPLATES: dict[str, PromptTemplate] = {
    "v1": PromptTemplate(
        system="You analyse social media posts. Answer in two or three short sentences.",
        text=("Post: \"{text}\"\n"
              "Name the aspects in this post (people, organisations, products, places, events) and say "
              "whether the author feels positive, neutral or negative about each, and why."),
        image=_IMAGE_V1,
    ),
    # One line per entity, "Entity: sentiment - short reason", shown by three invented posts (v1's
    # free prose came out as one template, "The author feels positive about X", whatever the post).
    "v2": PromptTemplate(
        system="List the people, places, brands and events a post names and the author's feeling "
               "toward each: positive, neutral or negative.",
        text="Post: \"{text}\"",
        image=_IMAGE_V1,
        examples=(
            ("Stuck at Gatwick for 3 hours because Ryanair cancelled our flight again . Never again",
             "Ryanair: negative - it cancelled the author's flight\nGatwick: neutral - where it happened"),
            ("Lunch with Jamie Oliver in Soho , the pasta was amazing ! # foodie",
             "Jamie Oliver: positive - the author loved the lunch\nSoho: neutral - where it was"),
            ("RT @ nbcnews : Lakers to face Celtics at Staples Center on Friday",
             "Lakers: neutral - a news report\nCeltics: neutral - a news report\nStaples Center: neutral - the venue"),
        ),
    ),
    # v2 plus the post's candidate names (lrsa.rationale.names) listed under it, one line per name
    # asked for, "only mentioned = neutral" said and shown, the answer tidied (`tidy_name_lines`).
    "v3": PromptTemplate(
        system="Write one line for each name listed: the name, the author's feeling toward it (positive, "
               "neutral or negative) and a short reason. A name that is only mentioned or reported is neutral.",
        text="Post: \"{text}\"\nNames: {names}",
        image=_IMAGE_V1,
        examples=(
            ("Great night with Adele at the O2 ! # concert",
             "Adele: positive - the author enjoyed her show\nO2: neutral - only the venue\n"
             "#concert: neutral - only a tag"),
            ("Ryanair cancelled my flight again , stuck at Gatwick all night . Never again",
             "Ryanair: negative - it cancelled the author's flight\nGatwick: neutral - only the place"),
            ("RT @ BBCNews : Obama to visit Kenya in July",
             "Obama: neutral - only reported\nKenya: neutral - only reported"),
        ),
        name_lines=True,
    ),
    # For an instruct model that knows sentiment (Qwen2.5-1.5B, issue 28): v3's one line per listed
    # name, with the polarity rules spelt out (good or bad news for a name is the author's verdict on
    # it, as Twitter-2015/2017 label it), @-mentions among the names (names v2) and examples that
    # show each class, news included, so that "only reported" is not the answer for every name.
    "v4": PromptTemplate(
        system=_V4_SYSTEM,
        text="Post: \"{text}\"\nNames: {names}",
        image=_IMAGE_V1,
        examples=(
            ("Congrats to @ AshBarty on the title ! What a final at Wimbledon # tennis",
             "AshBarty: positive - congratulated on winning\nWimbledon: neutral - only the venue\n"
             "#tennis: neutral - only a tag"),
            ("Ryanair cancelled my flight again , stuck at Gatwick all night . Never again",
             "Ryanair: negative - it cancelled the author's flight\nGatwick: neutral - only the place"),
            ("RT @ BBCNews : Two injured as Tesla crashes into a shop in Leeds",
             "Tesla: negative - bad news, its car crashed\nLeeds: neutral - only the place"),
            ("Obama to visit Kenya in July . Can't wait to see Michelle !",
             "Obama: neutral - only reported\nKenya: neutral - only reported\n"
             "Michelle: positive - the author is excited to see her"),
        ),
        name_lines=True,
        names="v2",
    ),
    # v4 with each example's reason about the post (v4's "only reported" was copied for most names)
    # and a logit bias against "neutral": greedy decoding answered neutral for 83% of T15 names.
    "v5": PromptTemplate(
        system=_V4_SYSTEM,
        text="Post: \"{text}\"\nNames: {names}",
        image=_IMAGE_V1,
        examples=_V5_EXAMPLES,
        name_lines=True,
        names="v2",
        label_bias=(("neutral", -1.5),),
    ),
    # v5 with the bias spread over the three labels: v5 still under-answered negative (T15 NEG recall
    # 28.6) and turned neutral names positive (44 of 154).
    "v6": PromptTemplate(
        system=_V4_SYSTEM,
        text="Post: \"{text}\"\nNames: {names}",
        image=_IMAGE_V1,
        examples=_V5_EXAMPLES,
        name_lines=True,
        names="v2",
        label_bias=(("neutral", -1.5), ("positive", -0.5), ("negative", 1.0)),
    ),
    # For a model distilled on the teacher's reasons (training/distill.py, issue 18 candidate 3):
    # no examples, the post only; the answer is the reasons' language the fused SLM learnt from.
    "d1": PromptTemplate(
        system="For each aspect of the post (person, organisation, product, place, event) give the "
               "author's sentiment toward it and why.",
        text="Post: \"{text}\"",
        image=_IMAGE_V1,
    ),
}


def get_template(version: str = PROMPT_VERSION) -> PromptTemplate:
    try:
        return TEMPLATES[version]
    except KeyError:
        raise ValueError(f"unknown prompt version {version!r}; known: {sorted(TEMPLATES)}") from None


def label_token_bias(tokenizer, label_bias: tuple[tuple[str, float], ...]) -> dict[int, float]:
    """Token id -> logit bias: the first token of each word as written after a space or a line start,
    lower-case and capitalised."""
    out: dict[int, float] = {}
    for word, bias in label_bias:
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            ids = tokenizer(form, add_special_tokens=False)["input_ids"]
            if ids:
                out[int(ids[0])] = bias
    return out


def text_messages(text: str, version: str = PROMPT_VERSION) -> list[dict[str, str]]:
    """Chat messages asking for the post's text rationale."""
    t = get_template(version)
    messages = [{"role": "system", "content": t.system}]
    for post, answer in t.examples:
        messages += [{"role": "user", "content": _user_turn(t, post)}, {"role": "assistant", "content": answer}]
    return messages + [{"role": "user", "content": _user_turn(t, text)}]


def listed_names(text: str, version: str = PROMPT_VERSION) -> list[str]:
    """The candidate names a version's prompt lists for a post ([] for versions that list none)."""
    return _names(get_template(version), text)


def _names(t: PromptTemplate, text: str) -> list[str]:
    if "{names}" not in t.text:
        return []
    return (candidate_names_v2 if t.names == "v2" else candidate_names)(text)


def _user_turn(t: PromptTemplate, text: str) -> str:
    """The template's user turn for a post; {names} is the post's candidate names (lrsa.rationale.names)."""
    if "{names}" not in t.text:
        return t.text.format(text=text)
    return t.text.format(text=text, names="; ".join(_names(t, text)) or "none")


def render(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the chat prompt (the model's chat template), or a plain prompt for base models."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    plain = "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"
    return tokenizer(plain)["input_ids"]


# a list marker an instruct model may put before a line: "- ", "* ", "1. ", "2) "
_LIST_MARK = re.compile(r"^(?:[-*•]\s+|\d{1,2}[.)]\s+)")


def tidy_name_lines(answer: str, post: str) -> str:
    """"Name: ..." lines of an answer whose name is in the post (lrsa.rationale.verdicts' matching:
    case and separators free), the first line per name, list markers and markdown emphasis around
    the name dropped ("1. **Tesla**: ..." -> "Tesla: ..."); the first line of the answer when none is."""
    keep, seen = [], set()
    for line in (_LIST_MARK.sub("", x.strip()) for x in answer.splitlines()):
        name, _, rest = line.partition(":") if ":" in line else ("", "", "")
        name = name.strip(" *_`\"")
        pattern = term_pattern(name) if name else None
        if pattern and pattern.search(post) and name.lower() not in seen:
            seen.add(name.lower())
            rest = rest.strip().lstrip("*_ ").strip()
            keep.append(f"{name}: {rest}" if rest else f"{name}:")
    return "\n".join(keep) if keep else next((x.strip() for x in answer.splitlines() if x.strip()), "")


def finish(answer: str, post: str, version: str = PROMPT_VERSION) -> str:
    """The rationale from the LLM's answer (stripped; name lines tidied for versions that ask for them)."""
    answer = answer.strip()
    return tidy_name_lines(answer, post) if get_template(version).name_lines else answer
