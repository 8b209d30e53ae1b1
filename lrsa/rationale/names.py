"""Candidate names in a post, found without a model: runs of capitalised words, hashtags and
all-caps words (what aspect terms in social posts mostly are). A prompt can list them so that a
small LLM writes one line per name instead of inventing or copying names."""

from __future__ import annotations

import re

# Capitalised words that open sentences or tweets far more often than they name something.
_SKIP = set("""rt i i'm im a an the this that these those it its it's my our your his her their we you he she they
me us him them in on at of for to from by with and or but so if is are was were be been am do does did
not no yes oh hey hi lol omg via new just what who why how when where which there here today tonight
now via please thanks thank happy good great best more most all some any one two first last next
check watch see read live breaking video photo photos pic news update never
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday""".split())
_TOKEN = re.compile(r"[#@]?\s?[\w'&.-]*\w|\S")


def candidate_names(text: str, limit: int = 6) -> list[str]:
    """Distinct candidate names in order of appearance, at most `limit`: hashtags (as written,
    '#' glued), runs of capitalised or all-caps words, mentions skipped (they name accounts)."""
    words = text.replace("# ", "#").replace("@ ", "@").split()
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            name = " ".join(run)
            if name.lower() not in (o.lower() for o in out):
                out.append(name)
            run.clear()

    for w in words:
        core = w.strip(".,!?:;\"()[]…'")
        if w.startswith("@") or not core:
            flush()
            continue
        if core.startswith("#") and len(core) > 1:
            flush()
            run.append(core)
            flush()
            continue
        if core[0].isupper() and core.lower() not in _SKIP and any(c.isalpha() for c in core):
            run.append(core)
            if core != w.rstrip() or w[-1] in ".,!?:;":
                flush()
        else:
            flush()
    flush()
    return out[:limit]
