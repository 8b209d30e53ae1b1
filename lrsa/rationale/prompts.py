"""Versioned prompt templates for rationales. A rationale's text depends on its prompt, so the
version travels with every rationale (Result.model, the batch job's JSONL) and a change of
wording is a new version, never an edit of an old one."""

from __future__ import annotations

from dataclasses import dataclass

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


_IMAGE_V1 = ("The image was posted with the text: \"{text}\"\n"
             "Describe the image in one or two sentences: who or what is shown and the mood it conveys.")

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


def text_messages(text: str, version: str = PROMPT_VERSION) -> list[dict[str, str]]:
    """Chat messages asking for the post's text rationale."""
    t = get_template(version)
    messages = [{"role": "system", "content": t.system}]
    for post, answer in t.examples:
        messages += [{"role": "user", "content": _user_turn(t, post)}, {"role": "assistant", "content": answer}]
    return messages + [{"role": "user", "content": _user_turn(t, text)}]


def _user_turn(t: PromptTemplate, text: str) -> str:
    """The template's user turn for a post; {names} is the post's candidate names (lrsa.rationale.names)."""
    if "{names}" not in t.text:
        return t.text.format(text=text)
    from lrsa.rationale.names import candidate_names

    return t.text.format(text=text, names="; ".join(candidate_names(text)) or "none")


def render(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the chat prompt (the model's chat template), or a plain prompt for base models."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    plain = "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"
    return tokenizer(plain)["input_ids"]


def tidy_name_lines(answer: str, post: str) -> str:
    """"Name: ..." lines of an answer whose name is in the post (lrsa.rationale.verdicts' matching:
    case and separators free), the first line per name; the first line of the answer when none is."""
    from lrsa.rationale.verdicts import term_pattern

    keep, seen = [], set()
    for line in (x.strip() for x in answer.splitlines()):
        name = line.split(":", 1)[0].strip() if ":" in line else ""
        pattern = term_pattern(name) if name else None
        if pattern and pattern.search(post) and name.lower() not in seen:
            seen.add(name.lower())
            keep.append(line)
    return "\n".join(keep) if keep else next((x.strip() for x in answer.splitlines() if x.strip()), "")


def finish(answer: str, post: str, version: str = PROMPT_VERSION) -> str:
    """The rationale from the LLM's answer (stripped; name lines tidied for versions that ask for them)."""
    answer = answer.strip()
    return tidy_name_lines(answer, post) if get_template(version).name_lines else answer
