"""Entity normalisation (lrsa/entities.py): table cases, the shipped alias file, and properties."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrsa.entities import AliasError, EntityNormaliser, fold, normalise
from repo_paths import REPO

ALIAS_FILE = REPO / "deploy" / "entities.aliases.yaml"


@pytest.mark.parametrize("term, key", [
    ("Apple", "apple"),
    ("APPLE", "apple"),
    ("Apple's", "apple"),
    ("Apple’s", "apple"),
    ("James'", "james"),
    ("#Netflix", "netflix"),
    ("@netflix", "netflix"),
    ("$TSLA", "tsla"),
    ("  Google   Maps\n", "google maps"),
    ("U.S.", "us"),
    ("Chick-fil-A", "chick fil a"),
    ("AT&T", "at&t"),
    ("Disney+", "disney+"),
    ("Hallgrímskirkja", "hallgrímskirkja"),
    ("Ｎｅｔｆｌｉｘ", "netflix"),            # full-width letters (NFKC)
    ("Straße", "strasse"),                    # case folding, not lower()
    ("Netflix 🙄", "netflix"),
])
def test_folding_without_aliases(term: str, key: str) -> None:
    assert normalise(term) == key


def test_a_term_of_punctuation_only_keeps_a_non_empty_key() -> None:
    assert normalise("!!!") == "!!!"
    assert normalise("") == ""


def test_alias_file_maps_surface_forms_to_the_display_name() -> None:
    n = EntityNormaliser.from_file(ALIAS_FILE)
    for form in ("Delta", "@Delta", "#delta", "Delta Airlines", "DELTA AIR LINES", "Delta's", "#DeltaAirLines"):
        assert n(form) == "Delta Air Lines", form
    assert n("mcdonalds") == n("McDonald's") == "McDonald's"
    assert n("Coke") == "Coca-Cola"
    # unknown entities pass through, folded
    assert n("Lufthansa") == "lufthansa" and n("@Lufthansa’s") == "lufthansa"


def test_alias_naming_two_entities_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "a.yaml"
    bad.write_text("Delta Air Lines: [Delta]\nDelta Faucet: ['@delta']\n")
    with pytest.raises(AliasError, match="names two entities"):
        EntityNormaliser.from_file(bad)


@pytest.mark.parametrize("text, match", [
    ("- just\n- a list\n", "expected a mapping"),
    ("Delta: Delta Airlines\n", "must be a list"),
    ("Delta: [[nested]]\n", "is not a string"),
    ("Delta: ['!!!']\n", "no letters or digits"),
    ("Delta: [unclosed\n", "cannot read"),
])
def test_malformed_alias_files_are_refused_with_a_reason(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(text)
    with pytest.raises(AliasError, match=match):
        EntityNormaliser.from_file(path)


def test_missing_alias_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AliasError, match="cannot read"):
        EntityNormaliser.from_file(tmp_path / "nope.yaml")


def test_empty_alias_file_means_folding_only(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("# nothing yet\n")
    assert EntityNormaliser.from_file(path)("@Delta") == "delta"


_WITH_ALIASES = EntityNormaliser.from_file(ALIAS_FILE)
_texts = st.one_of(st.text(), st.text(alphabet=st.sampled_from(list("Aa's’.#@-& +Dd\u0301e\u0065İıßﬀ!🙄 \t"))),
                   st.sampled_from(["Delta", "@Delta", "Apple's", "İstanbul", "ﬀ", "e.\u0301", "\ud800", "a\udfffb's"]),
                   st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cn", "Co", "Mn", "Lu", "Po"])))


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_normalise_never_raises_and_is_idempotent(term: str) -> None:
    for n in (normalise, _WITH_ALIASES):
        key = n(term)
        assert isinstance(key, str)
        assert n(key) == key
    assert fold(fold(term)) == fold(term)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda s: fold(s) != ""))
def test_decorations_do_not_change_the_key(term: str) -> None:
    key = normalise(term)
    assert normalise(f"#{term}") == normalise(f"@{term}") == normalise(f"  {term}\t") == key


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1))
def test_ascii_case_does_not_change_the_key(term: str) -> None:
    assert normalise(term.upper()) == normalise(term.lower())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_the_ascii_fast_path_folds_as_the_general_rules_do(term: str) -> None:
    from lrsa.entities import _fold_once

    general = term
    for _ in range(5):
        folded = _fold_once(general)
        if folded == general:
            break
        general = folded
    assert fold(term) == general
