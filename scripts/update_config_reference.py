"""Rewrite docs/configuration.md's generated reference with `lrsa config-reference`'s output
(tests/project/test_readme.py checks that it is current)."""

from pathlib import Path

from lrsa_cli.reference import BEGIN, END, render

doc = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
text = doc.read_text()
head, rest = text.split(BEGIN, 1)
_, tail = rest.split(END, 1)
doc.write_text(head + render() + tail)
print(f"updated {doc}")
