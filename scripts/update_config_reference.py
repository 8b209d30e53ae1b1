"""Replace the README's configuration reference with `lrsa config-reference`'s output."""

from pathlib import Path

from lrsa_cli.reference import BEGIN, END, render

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
head, rest = text.split(BEGIN, 1)
_, tail = rest.split(END, 1)
readme.write_text(head + render() + tail)
print(f"updated {readme}")
