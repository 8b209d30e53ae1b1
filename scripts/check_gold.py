#!/usr/bin/env python3
"""Validate a gold aspect-sentiment JSONL file and print its counts.

Each line: {"id", "text", "aspects": [{"term", "start", "end", "sentiment"}, ...], ...}
Checks: every line parses as a JSON object, ids are unique non-empty strings,
text is a string, spans are ints within the text with text[start:end] == term,
spans in a post do not overlap, sentiment is positive/neutral/negative, and
created_at (when present) is an ISO 8601 UTC time ending in Z.

Usage: python3 scripts/check_gold.py samples/brand_posts.gold.jsonl [more.jsonl ...]
Exit status 1 when any file has an error.
"""
import json
import sys
from collections import Counter
from datetime import datetime

SENTIMENTS = ("positive", "neutral", "negative")


def check(path):
    errors, ids = [], set()
    sentiments, categories, terms = Counter(), Counter(), Counter()
    posts = multi = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{where}: not JSON ({e})")
                continue
            if not isinstance(rec, dict):
                errors.append(f"{where}: not a JSON object")
                continue
            pid, text = rec.get("id"), rec.get("text")
            if not isinstance(pid, str) or not pid:
                errors.append(f"{where}: missing or empty id")
            elif pid in ids:
                errors.append(f"{where}: duplicate id {pid!r}")
            ids.add(pid)
            if not isinstance(text, str) or not text:
                errors.append(f"{where}: missing or empty text")
                continue
            ts = rec.get("created_at")
            if ts is not None:
                try:
                    if not (isinstance(ts, str) and ts.endswith("Z")):
                        raise ValueError
                    datetime.fromisoformat(ts[:-1] + "+00:00")
                except ValueError:
                    errors.append(f"{where}: created_at {ts!r} is not ISO 8601 UTC with Z")
            aspects = rec.get("aspects")
            if not isinstance(aspects, list):
                errors.append(f"{where}: aspects is not a list")
                continue
            posts += 1
            categories[rec.get("category", "-")] += 1
            multi += len(aspects) >= 2
            spans = []
            for n, a in enumerate(aspects):
                at = f"{where} aspect {n}"
                if not isinstance(a, dict):
                    errors.append(f"{at}: not an object")
                    continue
                term, start, end, sent = (a.get(k) for k in ("term", "start", "end", "sentiment"))
                if sent not in SENTIMENTS:
                    errors.append(f"{at}: sentiment {sent!r} not one of {SENTIMENTS}")
                    continue
                if not isinstance(term, str) or not term or term != term.strip():
                    errors.append(f"{at}: term {term!r} empty or padded with whitespace")
                    continue
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
                    errors.append(f"{at}: start/end not integers")
                    continue
                if not 0 <= start < end <= len(text):
                    errors.append(f"{at}: span [{start}, {end}) outside text of length {len(text)}")
                    continue
                if text[start:end] != term:
                    errors.append(f"{at}: text[{start}:{end}] = {text[start:end]!r} != term {term!r}")
                    continue
                spans.append((start, end, term))
                sentiments[sent] += 1
                terms[term.casefold()] += 1
            spans.sort()
            for (s1, e1, t1), (s2, e2, t2) in zip(spans, spans[1:]):
                if s2 < e1:
                    errors.append(f"{where}: spans {t1!r} [{s1},{e1}) and {t2!r} [{s2},{e2}) overlap")
    return errors, posts, multi, sentiments, categories, terms


def main(paths):
    failed = False
    for path in paths:
        errors, posts, multi, sentiments, categories, terms = check(path)
        for e in errors:
            print("ERROR", e)
        total = sum(sentiments.values())
        print(f"{path}: {posts} posts, {total} aspects, {multi} posts with 2+ aspects, "
              f"{len(terms)} distinct entity terms (case-insensitive)")
        for s in SENTIMENTS:
            share = 100 * sentiments[s] / total if total else 0.0
            print(f"  {s:<8} {sentiments[s]:4d}  {share:5.1f}%")
        if set(categories) != {"-"}:
            print("  categories: " + ", ".join(f"{c} {n}" for c, n in categories.most_common()))
        print("  OK" if not errors else f"  {len(errors)} error(s)")
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
