"""Candidate names in a post, found without a model: runs of capitalised words, hashtags and
all-caps words (what aspect terms in social posts mostly are). A prompt can list them so that a
small LLM writes one line per name instead of inventing or copying names.

Two versions, as prompts have versions (a prompt's text depends on them):
- `candidate_names` (prompt v3): mentions skipped, a skip word ends a run, at most 6.
- `candidate_names_v2` (prompt v4): @-mentions count as names (except the retweet's source,
  "RT @ X :"), a capitalised skip word inside a run stays in it ("Theresa May", "FATHER OF THE
  BRIDE") and one that opens a run of capitalised names starts it ("One Direction"), at most 8.
  On the first 150 dev posts it covers 237/244 (T15) and 268/301 (T17) gold aspects, against
  229 and 238 for v1.
"""

from __future__ import annotations

# Capitalised words that open sentences or tweets far more often than they name something.
_SKIP = set("""rt i i'm im a an the this that these those it its it's my our your his her their we you he she they
me us him them in on at of for to from by with and or but so if is are was were be been am do does did
not no yes oh hey hi lol omg via new just what who why how when where which there here today tonight
now via please thanks thank happy good great best more most all some any one two first last next
check watch see read live breaking video photo photos pic news update never
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday""".split())
# names v2 also skips these openers (v1's list is frozen with prompt v3)
_SKIP_V2 = _SKIP | set("""congrats congratulations can't don't won't i've i'll i'd let's love loving join meet
welcome wow yay ready excited proud looking got get tbt rip omfg""".split())
# words that never open or join a name, whatever their case
_NEVER = set("rt i i'm im via lol omg".split())
_STRIP = ".,!?:;\"()[]…'"
_SURNAMES = {"may"}  # skip words that end names often enough to keep: "Theresa May", "Brian May"


def candidate_names(text: str, limit: int = 6) -> list[str]:
    """Distinct candidate names in order of appearance, at most `limit`: hashtags (as written,
    '#' glued), runs of capitalised or all-caps words, mentions skipped (they name accounts)."""
    words = text.replace("# ", "#").replace("@ ", "@").split()
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            _add(out, " ".join(run))
            run.clear()

    for w in words:
        core = w.strip(_STRIP)
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


def _add(out: list[str], name: str) -> None:
    if name.lower() not in (o.lower() for o in out):
        out.append(name)


def _capitalised(core: str) -> bool:
    return bool(core) and core[0].isupper() and any(c.isalpha() for c in core) and core.lower() not in _NEVER


def candidate_names_v2(text: str, limit: int = 8) -> list[str]:
    """Prompt v4's candidate names: v1's, plus @-mentions (the account name, '@' dropped; not the
    retweet's source "RT @ X :"), capitalised skip words kept inside a run and opening a run that a
    capitalised non-skip word continues."""
    words = text.replace("# ", "#").replace("@ ", "@").split()
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        # "Apple Today" -> "Apple"; all caps stay ("says WHO", "FATHER OF THE BRIDE"), as "Theresa May"
        while run and run[-1].lower() in _SKIP_V2 and run[-1].lower() not in _SURNAMES and not _caps(run[-1]):
            run.pop()
        if run:
            _add(out, " ".join(run))
            run.clear()

    for i, w in enumerate(words):
        core = w.strip(_STRIP)
        if not core:
            flush()
            continue
        if core.startswith("@"):
            flush()
            handle = core[1:].strip(_STRIP)
            retweet_source = i > 0 and words[i - 1].lower() == "rt"
            if handle and not retweet_source:
                _add(out, handle)
            continue
        if core.startswith("#") and len(core) > 1:
            flush()
            _add(out, core)
            continue
        ends = core != w.rstrip() or w[-1] in ".,!?:;"
        if _capitalised(core) and (core.lower() not in _SKIP_V2 or run or _opens_run(words, i)
                                   or _acronym(words, i)):
            run.append(core)
            if ends:
                flush()
        else:
            flush()
    flush()
    return out[:limit]


def _caps(word: str) -> bool:
    return len(word) > 1 and word.isupper()


def _acronym(words: list[str], i: int) -> bool:
    """An all-caps skip word among words that are not all caps names something: "US", "WHO"."""
    core = words[i].strip(_STRIP)
    if len(core) < 2 or not core.isupper():
        return False
    around = [words[j].strip(_STRIP) for j in (i - 1, i + 1) if 0 <= j < len(words)]
    return not any(a.isupper() and len(a) > 1 for a in around)


def _opens_run(words: list[str], i: int) -> bool:
    """A capitalised skip word opens a name when the next word is a capitalised non-skip word
    and no punctuation ends this one: "One Direction", "The Mask"."""
    w = words[i]
    if w[-1] in ".,!?:;" or i + 1 >= len(words):
        return False
    nxt = words[i + 1].strip(_STRIP)
    return _capitalised(nxt) and nxt.lower() not in _SKIP_V2 and not nxt.startswith(("#", "@"))
