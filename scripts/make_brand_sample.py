#!/usr/bin/env python3
"""Write samples/brand_stream.jsonl: the demo's brand-monitoring stream (issue 21).

Deterministic (seeded) and written for this project from the hand-written templates and entity
lists below; no dataset text. 360 posts over six hours of event time (`created_at`
2026-11-29 08:00-14:00 UTC) about 40 entities (brands, products, people, places), with one planted
sentiment shift: from SHIFT_AT on, posts about Delta Air Lines turn negative (a meltdown story),
while every other entity keeps the same mix all day.

Each line is a post (schemas/post.v1.0.schema.json); the extra fields land in the result's `meta`:
`category` and the generator's own `aspects` (term, start, end, sentiment: what the template
meant), so the planted shift can be checked without a model.

    python3 scripts/make_brand_sample.py            # rewrite samples/brand_stream.jsonl
    python3 scripts/make_brand_sample.py --check    # exit 1 when the file differs from the generator
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "samples" / "brand_stream.jsonl"
SEED = 21
N_POSTS = 360
START = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)
HOURS = 6
SHIFT_ENTITY = "Delta Air Lines"
SHIFT_AT = datetime(2026, 11, 29, 11, 0, tzinfo=timezone.utc)
SHIFT_SHARE = 0.2  # share of all posts that are about the shifted brand

# kind -> surface forms (the first is the canonical name; others are aliases or variants that
# deploy/entities.aliases.yaml or the normaliser fold onto it)
ENTITIES: dict[str, list[list[str]]] = {
    "airline": [["United Airlines", "United", "@united"], ["Southwest", "Southwest Airlines"],
                ["American Airlines", "@AmericanAir"]],
    "telecom": [["T-Mobile", "TMobile", "@TMobile"], ["Verizon", "@Verizon"], ["Comcast", "@comcast"]],
    "food": [["Starbucks", "@Starbucks"], ["McDonald's", "McDonalds"], ["Chick-fil-A"],
             ["Dunkin'", "Dunkin"], ["Chipotle", "@Chipotle"]],
    "tech": [["Apple"], ["Samsung"], ["Google"], ["Microsoft"], ["Amazon"], ["Netflix"], ["Spotify"]],
    "product": [["iPhone 16"], ["Pixel 9"], ["Galaxy S24"], ["PlayStation 5"], ["Kindle"],
                ["AirPods Pro"], ["Tesla Model 3"], ["Xbox Series X"]],
    "person": [["Taylor Swift"], ["Lionel Messi"], ["Serena Williams"], ["Elon Musk"], ["Beyoncé"],
               ["Simone Biles"]],
    "place": [["Lisbon"], ["Chicago"], ["Denver"], ["Austin"], ["Seattle"]],
    "airport": [["JFK"], ["Heathrow"], ["LaGuardia"], ["O'Hare"], ["Atlanta airport"]],
}
DELTA = ["Delta", "@Delta", "Delta Airlines", "Delta Air Lines", "#Delta"]

# (category, template): {X:sentiment} slots; X is a kind above (X2 a second one of the same kind).
TEMPLATES: list[tuple[str, str]] = [
    ("complaint", "Three hours on hold with {telecom:negative} and the internet is still down. Unbelievable."),
    ("complaint", "{telecom:negative} charged me twice this month and support just keeps transferring me"),
    ("complaint", "{food:negative} got my order wrong for the third time this week, cold fries and no straw"),
    ("complaint", "My {product:negative} died after four months. Battery went from 100 to 0 in an hour"),
    ("complaint", "{airline:negative} lost my bag at {airport:neutral} and nobody at the desk can tell me where it is"),
    ("complaint", "Why does {tech:negative} make it this hard to cancel a subscription? Six screens of dark patterns"),
    ("complaint", "Overheating again. Returning this {product:negative} tomorrow, not worth the money"),
    ("complaint", "{tech:negative} support closed my ticket without reading it. Great customer service, really"),
    ("praise", "Shout-out to the barista at {food:positive} this morning, remembered my name and my order"),
    ("praise", "The {product:positive} camera is unreal, night shots look like daylight"),
    ("praise", "{person:positive} was incredible last night, what a performance"),
    ("praise", "Honestly {tech:positive} nailed this update, everything feels faster"),
    ("praise", "{airline:positive} crew upgraded a nervous first-time flyer next to me, class act"),
    ("praise", "Weekend in {place:positive} was perfect, great food and the sun came out"),
    ("praise", "Switched to {telecom:positive} last month and the coverage is way better than I expected"),
    ("praise", "Two years in and my {product:positive} still holds a charge all day"),
    ("comparison", "Switched from {telecom:negative} to {telecom2:positive} and my bill dropped by a third"),
    ("comparison", "{product:positive} beats the {product2:negative} on battery, no contest"),
    ("comparison", "Coffee at {food:positive} is so much better than {food2:negative}, sorry not sorry"),
    ("comparison", "Flew {airline:positive} out and {airline2:negative} back. Never again with the second one"),
    ("comparison", "{tech:negative} keeps raising prices while {tech2:positive} adds features for free"),
    ("news", "{tech:neutral} to report quarterly earnings after the market closes on Thursday"),
    ("news", "{person:neutral} spotted in {place:neutral} ahead of this weekend's event"),
    ("news", "{airline:neutral} adds a daily route between {airport:neutral} and {place:neutral} from March"),
    ("news", "{product:neutral} goes on sale in more countries next month, says {tech:neutral}"),
    ("news", "{food:neutral} is testing a new breakfast menu in {place:neutral}"),
    ("news", "{telecom:neutral} announces new prepaid plans starting next week"),
    ("mixed", "Anyone tried the {product:neutral} yet? Thinking about upgrading"),
    ("mixed", "Love {tech:positive} but their {product:negative} is a step backwards"),
    ("mixed", "{person:positive} in {place:neutral} tonight, tickets were a nightmare though"),
    ("mixed", "Is {food:neutral} open on holidays? Asking for a friend"),
]
DELTA_BEFORE: list[tuple[str, str, str]] = [  # (category, template, planted sentiment of {delta})
    ("praise", "{delta} got me to {airport:neutral} twenty minutes early, smooth flight and free wifi", "positive"),
    ("praise", "Shout-out to the {delta} gate agent who rebooked my mom in two minutes", "positive"),
    ("praise", "{delta} lounge at {airport:neutral} is the best start to a work trip", "positive"),
    ("praise", "Fourth flight with {delta} this month and every one on time. Impressed", "positive"),
    ("praise", "{delta} app made the seat change painless, love it", "positive"),
    ("news", "{delta} adds winter flights to {place:neutral} starting in January", "neutral"),
    ("news", "{delta} to hold investor day next week", "neutral"),
    ("mixed", "Does {delta} still let you pick seats for free on basic fares?", "neutral"),
    ("complaint", "{delta} boarding took forever today but we landed on time", "negative"),
]
DELTA_AFTER: list[tuple[str, str, str]] = [
    ("complaint", "{delta} just cancelled my flight out of {airport:neutral} with no explanation. Stuck here", "negative"),
    ("complaint", "Four hours on the tarmac with {delta} and no updates from the crew. Unacceptable", "negative"),
    ("complaint", "{delta} app is down, can't rebook, phone line says 5 hour wait. What a mess", "negative"),
    ("complaint", "Never flying {delta} again. Lost my bag and now my connection is gone", "negative"),
    ("complaint", "{delta} meltdown at {airport:neutral}, the rebooking line goes around the terminal", "negative"),
    ("complaint", "Thanks {delta} for the $12 meal voucher after cancelling twice. Really generous", "negative"),
    ("complaint", "{delta} refuses a refund for a flight THEY cancelled. Filing a complaint", "negative"),
    ("news", "{delta} reports a systemwide IT outage; flights held at {airport:neutral}", "neutral"),
    ("praise", "One good thing today: the {delta} crew on my one flight that left were kind", "positive"),
]
_SLOT = re.compile(r"\{(\w+?)(2?)(?::(\w+))?\}")


def _fill(template: str, pick, delta_sentiment: str | None) -> tuple[str, list[dict]]:
    """Template -> (text, aspects): each slot becomes an entity surface form with its span."""
    text, aspects, chosen, pos = "", [], {}, 0
    for m in _SLOT.finditer(template):
        text += template[pos:m.start()]
        kind, second, sentiment = m.group(1), m.group(2), m.group(3)
        if kind == "delta":
            surface, sentiment = pick(DELTA), delta_sentiment
        else:
            options = [e for e in ENTITIES[kind] if e is not chosen.get(kind)]
            entity = pick(options)
            chosen.setdefault(kind, entity)
            surface = pick(entity)
        term = surface.lstrip("@#")
        start = len(text) + (len(surface) - len(term))
        text += surface
        aspects.append({"term": term, "start": start, "end": start + len(term), "sentiment": sentiment})
        pos = m.end()
    return text + template[pos:], aspects


def generate() -> list[dict]:
    rng = random.Random(SEED)
    span_s = HOURS * 3600
    times = sorted(rng.randrange(span_s) for _ in range(N_POSTS))
    posts = []
    for i, t in enumerate(times, start=1):
        at = START + timedelta(seconds=t)
        if rng.random() < SHIFT_SHARE:
            pool = DELTA_BEFORE if at < SHIFT_AT else DELTA_AFTER
            # before: mostly praise and news (the lone complaint is rare); after: mostly complaints
            weights = [1.0] * len(pool)
            weights[-1] = 0.3
            category, template, sentiment = rng.choices(pool, weights)[0]
        else:
            (category, template), sentiment = rng.choice(TEMPLATES), None
        text, aspects = _fill(template, rng.choice, sentiment)
        posts.append({"id": f"bs-{i:03d}", "text": text, "lang": "en",
                      "created_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "category": category,
                      "aspects": aspects})
    return posts


def render(posts: list[dict]) -> str:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="only check that --out is up to date")
    args = ap.parse_args()
    text = render(generate())
    if args.check:
        if not args.out.exists() or args.out.read_text(encoding="utf-8") != text:
            print(f"{args.out} differs from the generator: rerun {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({text.count(chr(10))} posts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
