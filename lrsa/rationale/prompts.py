"""Versioned prompt templates for rationales. A rationale's text depends on its prompt, so the
version travels with every rationale (Result.model, the batch job's JSONL) and a change of
wording is a new version, never an edit of an old one."""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_VERSION = "v1"


@dataclass(frozen=True)
class PromptTemplate:
    system: str
    text: str   # user turn for the post's text; {text} is the post
    image: str  # user turn for a vision-language model describing the post's image; {text} is the post


TEMPLATES: dict[str, PromptTemplate] = {
    "v1": PromptTemplate(
        system="You analyse social media posts. Answer in two or three short sentences.",
        text=("Post: \"{text}\"\n"
              "Name the aspects in this post (people, organisations, products, places, events) and say "
              "whether the author feels positive, neutral or negative about each, and why."),
        image=("The image was posted with the text: \"{text}\"\n"
               "Describe the image in one or two sentences: who or what is shown and the mood it conveys."),
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
    return [{"role": "system", "content": t.system}, {"role": "user", "content": t.text.format(text=text)}]


def render(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the chat prompt (the model's chat template), or a plain prompt for base models."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    plain = "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"
    return tokenizer(plain)["input_ids"]
