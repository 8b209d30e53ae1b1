"""Entity normalisation: the key that groups an aspect's surface forms ("Delta", "@Delta",
"Delta Airlines") under one entity ("Delta Air Lines").

Two steps:

1. `fold(term)`: a matching key. Unicode NFKC and case folding; possessives dropped ("Apple's",
   "Apple’s" -> "apple", "James'" -> "james"); apostrophes and dots deleted ("U.S." -> "us");
   every other punctuation mark or symbol (`#`, `@`, `$`, `-`, `_`, emoji, ...) becomes a space,
   except `&` and `+` ("AT&T", "Disney+"); whitespace collapsed. `#Delta`, `@delta` and `DELTA`
   all fold to "delta".
2. The alias table: folded alias -> canonical display name, read from a YAML file ops can edit
   (`deploy/entities.aliases.yaml`; worker setting `entity_aliases`).

The canonical key (`Aspect.entity`, what aggregates and alerts are keyed by) is the alias file's
display name for a known entity ("Delta Air Lines") and the folded form for any other ("apple").
`normalise` never raises and is idempotent: normalise(normalise(x)) == normalise(x).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b|(?<=s)['’](?=\s|$)")
_DELETED = {"'", "’", "‘", ".", "·"}
_KEPT = {"&", "+"}
_MAX_PASSES = 5


def _fold_once(s: str) -> str:
    s = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", s).casefold())
    s = _POSSESSIVE.sub("", s)
    out = []
    for ch in s:
        if ch in _DELETED:
            continue
        cat = unicodedata.category(ch)
        if ch in _KEPT or not (cat[0] in "PSZ" or cat in ("Cc", "Cf", "Cs", "Co", "Cn")):
            out.append(ch)
        else:
            out.append(" ")
    return unicodedata.normalize("NFKC", " ".join("".join(out).split()))


# ASCII fast path (most terms): the same rules with one str.translate
_ASCII_TABLE = {ord(c): (None if c in _DELETED else " ") for c in map(chr, range(128))
                if not c.isalnum() and c not in _KEPT and c != "_"}
_ASCII_TABLE[ord("_")] = " "


def _fold_ascii(s: str) -> str:
    s = _POSSESSIVE.sub("", s.lower())
    return " ".join(s.translate(_ASCII_TABLE).split())


def fold(term: str) -> str:
    """The matching key of a surface form (see the module doc); "" when nothing is left."""
    s = str(term)
    if s.isascii():
        return _fold_ascii(s)
    for _ in range(_MAX_PASSES):  # one pass almost always; a deletion can expose a new composition
        folded = _fold_once(s)
        if folded == s:
            break
        s = folded
    return s


def _fallback(term: str) -> str:
    """For a term that folds to nothing (only punctuation or symbols): whitespace and case folded."""
    return " ".join(str(term).split()).casefold()


class AliasError(ValueError):
    """The alias file cannot be used (unreadable, wrong shape, or one alias names two entities)."""


class EntityNormaliser:
    """normalise(term) -> canonical entity key, with an optional alias table."""

    def __init__(self, aliases: Mapping[str, list[str] | tuple[str, ...] | None] | None = None,
                 cache_size: int = 65_536) -> None:
        """`aliases`: canonical display name -> its other surface forms. The keys of the last
        `cache_size` distinct terms are cached (brand names repeat: most lookups are hits)."""
        self.table: dict[str, str] = {}
        self.normalise = lru_cache(maxsize=cache_size)(self._normalise)  # type: ignore[method-assign]
        for canonical, forms in (aliases or {}).items():
            if not isinstance(canonical, str) or not fold(canonical):
                raise AliasError(f"entity name {canonical!r} is not a usable name")
            canonical = " ".join(canonical.split())
            if forms is None:
                forms = []
            if isinstance(forms, str) or not isinstance(forms, (list, tuple)):
                raise AliasError(f"aliases of {canonical!r} must be a list of strings, got {type(forms).__name__}")
            for form in [canonical, *forms]:
                if not isinstance(form, (str, int, float)):
                    raise AliasError(f"alias {form!r} of {canonical!r} is not a string")
                key = fold(str(form))
                if not key:
                    raise AliasError(f"alias {form!r} of {canonical!r} has no letters or digits")
                if self.table.get(key, canonical) != canonical:
                    raise AliasError(f"alias {form!r} names two entities: {self.table[key]!r} and {canonical!r}")
                self.table[key] = canonical

    @classmethod
    def from_file(cls, path: str | Path | None) -> EntityNormaliser:
        """Read a YAML mapping `Display Name: [alias, ...]`; None -> no aliases (folding only)."""
        if path is None:
            return cls()
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise AliasError(f"cannot read the entity alias file {path}: {e}") from e
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise AliasError(f"entity alias file {path}: expected a mapping `Display Name: [aliases]`, "
                             f"got {type(data).__name__}")
        try:
            return cls(data)
        except AliasError as e:
            raise AliasError(f"entity alias file {path}: {e}") from None

    def __call__(self, term: str) -> str:
        return self.normalise(term)

    def _normalise(self, term: str) -> str:
        """The canonical entity key of `term`; never raises."""
        try:
            key = fold(term)
        except Exception:  # noqa: BLE001 - an odd string must never cost the post its result
            return _fallback_safe(term)
        if not key:
            return _fallback_safe(term)
        return self.table.get(key, key)


def _fallback_safe(term: object) -> str:
    try:
        return _fallback(str(term))
    except Exception:  # noqa: BLE001
        return ""


_PLAIN = EntityNormaliser()


def normalise(term: str) -> str:
    """The canonical key without an alias table (the folded form)."""
    return _PLAIN.normalise(term)
