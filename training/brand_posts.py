"""Brand-like training posts, written for this project: the kind of post a brand-monitoring
team reads (complaints, praise, sarcasm, comparisons, questions, news) with every aspect labelled.

Why: the Twitter-2015/2017 posts are mostly news and fan talk about people and places; their
negative aspects are few and explicit. Brand posts complain implicitly ("cancelled my flight two
hours before departure, zero explanation") and sarcastically ("great job losing my bag again"),
and name brands the way people type them ("Chick-fil-A", "AT&T", "@AmazonHelp"). A model that
never saw such posts reads them neutral or positive (issue 27).

Deterministic: `generate(n, seed)` draws templates and entities from the hand-written lists below
(no dataset text; none of it is taken from `samples/brand_posts.gold.jsonl`, the evaluation-only
regression set, nor from `scripts/make_brand_sample.py`, the demo stream's generator, whose
templates are kept apart so the demo still shows what a model learnt, not what it memorised).

Labelling rules are those of the regression set (samples/README.md): the span is the name without
`@`/`#` and without a possessive `'s`; names that contain an apostrophe or a hyphen keep it; the
sentiment is the one the post expresses towards that entity (sarcasm by what it means; a question
or a plain mention is neutral).

    python -m training.brand_posts --n 20 --seed 7     # print posts as gold JSONL
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys

from lrsa.text import tokenize_words
from training.data import Example

POLARITY = {"positive": "POS", "neutral": "NEU", "negative": "NEG"}

# kind -> surface forms of each entity (as people type them; `@x` marks a handle, labelled without @)
ENTITIES: dict[str, list[str]] = {
    "airline": ["Ryanair", "easyJet", "JetBlue", "Alaska Airlines", "Air Canada", "KLM", "Lufthansa",
                "British Airways", "Spirit Airlines", "Qantas", "@JetBlue", "@British_Airways", "Frontier"],
    "telecom": ["AT&T", "T-Mobile", "Sprint", "Vodafone", "Xfinity", "Spectrum", "@ATT", "Cox", "Optimum",
                "Virgin Media", "BT", "@TMobileHelp", "Mint Mobile"],
    "food": ["Chick-fil-A", "Wendy's", "Taco Bell", "Burger King", "7-Eleven", "Domino's", "Panera",
             "Subway", "KFC", "Popeyes", "Shake Shack", "In-N-Out", "Tim Hortons", "Pret", "Five Guys",
             "Ben & Jerry's", "Krispy Kreme", "Papa John's"],
    "retail": ["Walmart", "Target", "Costco", "IKEA", "Best Buy", "H&M", "Zara", "Home Depot", "Etsy",
               "eBay", "Trader Joe's", "Macy's", "Marks & Spencer", "Wayfair", "@AmazonHelp", "Amazon",
               "Aldi", "Kroger"],
    "tech": ["Adobe", "Meta", "Instagram", "TikTok", "Uber", "Lyft", "DoorDash", "Airbnb", "PayPal", "Zoom",
             "Slack", "Dropbox", "YouTube", "Disney+", "Hulu", "Venmo", "Grubhub", "Instacart", "@Uber_Support"],
    "product": ["Galaxy Buds", "Pixel Watch", "MacBook Air", "iPad Mini", "Surface Pro", "Kindle Paperwhite",
                "Nintendo Switch", "Steam Deck", "Fitbit Charge", "Roomba", "Ring doorbell", "Echo Dot",
                "Apple Watch", "ThinkPad", "Dyson V15", "Instant Pot", "GoPro Hero", "Oculus Quest"],
    "car": ["Tesla", "Ford", "Toyota", "Honda", "Hyundai", "Kia", "BMW", "Mercedes-Benz", "Rivian", "Volvo",
            "Subaru", "Rolls-Royce"],
    "bank": ["Chase", "Wells Fargo", "Bank of America", "Capital One", "Barclays", "Monzo", "Revolut",
             "Citi", "HSBC", "Santander"],
    "person": ["Taylor Swift", "Lewis Hamilton", "Zendaya", "Pedro Pascal", "Billie Eilish", "LeBron James",
               "Bad Bunny", "Gordon Ramsay", "Sabrina Carpenter", "Kylian Mbappé", "Emma Stone", "Dua Lipa",
               "Steph Curry", "Greta Gerwig", "Travis Kelce", "Ed Sheeran"],
    "team": ["Inter Miami", "Real Madrid", "Manchester United", "the Lakers", "Arsenal", "the Yankees",
             "Liverpool", "the Cowboys", "Chelsea", "the Celtics"],
    "place": ["St Mary's Hospital", "Portland", "Barcelona", "Nashville", "Dublin", "Times Square",
              "Miami Beach", "Tokyo", "Boston", "Yosemite", "Central Park", "San Diego", "Edinburgh"],
    "airport": ["Newark", "Gatwick", "LAX", "Dulles", "SFO", "Schiphol", "Logan", "Midway"],
    "show": ["Stranger Things", "The Last of Us", "Wednesday", "Severance", "Squid Game", "Succession",
             "Dune Part Two", "Oppenheimer", "Elden Ring", "Arcane"],
}

# (category, template). Slots: {kind:sentiment}; {kind2:...} a second entity of the same kind.
# A slot's sentiment is the one the post expresses towards that entity.
TEMPLATES: list[tuple[str, str]] = [
    # complaints, mostly implicit: no "bad", "hate" or "terrible"
    ("complaint", "{airline:negative} cancelled my flight 90 minutes before boarding. No reason, no voucher, no hotel"),
    ("complaint", "Day 3 of waiting for {airline:negative} to tell me where my suitcase is"),
    ("complaint", "Sat on the tarmac at {airport:neutral} for four hours and {airline:negative} offered us a pretzel"),
    ("complaint", "{airline:negative} charged me 65 for a carry-on that fit in the sizer. Every single time"),
    ("complaint", "Internet down since Tuesday and {telecom:negative} keeps saying a technician is coming"),
    ("complaint", "{telecom:negative} raised my bill again without telling me. 2nd time this year"),
    ("complaint", "45 minutes on hold with {telecom:negative} just to be disconnected"),
    ("complaint", "No signal at home, no signal at work. What am I paying {telecom:negative} for"),
    ("complaint", "Waited 25 minutes in the drive-thru at {food:negative} and they forgot half the bag"),
    ("complaint", "Found a hair in my sandwich from {food:negative}. Appetite gone"),
    ("complaint", "{food:negative} shrank the portions again and kept the price. Noticed"),
    ("complaint", "The ice cream machine at {food:negative} is broken. Again. Every time I go"),
    ("complaint", "Ordered from {retail:negative} two weeks ago, still says processing"),
    ("complaint", "{retail:negative} sent me someone else's order and now wants me to pay for the return"),
    ("complaint", "Self checkout at {retail:negative} needs an employee for every third item. Why have it"),
    ("complaint", "{tech:negative} locked my account and the appeal form just loops back to the login page"),
    ("complaint", "Driver cancelled three times in a row and {tech:negative} still charged me the fee"),
    ("complaint", "{tech:negative} keeps logging me out every single day since the update"),
    ("complaint", "My {product:negative} battery barely lasts two hours now and it's not even a year old"),
    ("complaint", "Second {product:negative} in six months with the same dead pixel. Quality control?"),
    ("complaint", "The {product:negative} won't connect to wifi after the firmware update. Bricked"),
    ("complaint", "{car:negative} dealership has had my car for five weeks waiting on a part"),
    ("complaint", "Recall notice from {car:negative} for the third time on the same model"),
    ("complaint", "{bank:negative} froze my card while I was abroad and the helpline closes at 5"),
    ("complaint", "{bank:negative} charged an overdraft fee on a pending payment. Thanks for nothing"),
    ("complaint", "Tickets for {person:negative} went up to 900 dollars the second the queue opened"),
    ("complaint", "{team:negative} gave up two goals in injury time. I can't do this every week"),
    ("complaint", "Six hours in the ER at {place:negative} and nobody has even taken my name"),
    ("complaint", "Streets in {place:negative} flooded again after ten minutes of rain"),
    ("complaint", "Finale of {show:negative} undid three seasons of character development in an hour"),
    ("complaint", "Emailed @{tech:negative} five times about a refund, five copy paste replies"),
    ("complaint", "Still no refund from {airline:negative} for a flight they cancelled in August"),
    ("complaint", "Update made my {product:negative} slower than the day I bought it"),
    ("complaint", "Paid for next day delivery, {retail:negative} says it'll arrive next week"),
    ("complaint", "Our {food:negative} order showed up 70 minutes late and stone cold"),
    # sarcasm: positive words, negative meaning
    ("sarcasm", "Love how {airline:negative} loses my bag on every single trip. Consistency!"),
    ("sarcasm", "Wow {telecom:negative}, a price increase for the holidays, how generous of you"),
    ("sarcasm", "Great job {tech:negative}, moving the button I use most behind three menus"),
    ("sarcasm", "Nothing says premium like a {product:negative} that overheats watching a video"),
    ("sarcasm", "Thanks {bank:negative} for the 35 dollar fee on a 3 dollar coffee. Really helpful"),
    ("sarcasm", "Cannot wait to spend another Saturday on hold with {retail:negative} customer service"),
    ("sarcasm", "Oh good, {food:negative} got my order right. Just kidding, it's someone else's"),
    ("sarcasm", "Another masterpiece of a refereeing performance. Well done {team:negative}, you earned nothing"),
    ("sarcasm", "So glad I pay {tech:negative} every month to watch ads"),
    ("sarcasm", "Five stars to {car:negative} for the check engine light on day two"),
    # praise
    ("praise", "Shoutout to {airline:positive} for rebooking me in two minutes when my connection was late"),
    ("praise", "{telecom:positive} fixed my line the same day I called. Didn't expect that"),
    ("praise", "Best fries in town are at {food:positive}, not even close"),
    ("praise", "The staff at {food:positive} on 5th street are always so kind"),
    ("praise", "{retail:positive} took back my return without a receipt, zero hassle"),
    ("praise", "Honestly {tech:positive} has made my commute so much easier"),
    ("praise", "Three years and my {product:positive} still runs like new"),
    ("praise", "The {product:positive} is the best thing I bought this year"),
    ("praise", "Test drove the new {car:positive} today and I'm in love"),
    ("praise", "{bank:positive} refunded a fraudulent charge within an hour. Impressed"),
    ("praise", "{person:positive} absolutely killed it tonight"),
    ("praise", "So proud of {person:positive}, that speech was everything"),
    ("praise", "What a comeback from {team:positive}! Best game of the season"),
    ("praise", "A week in {place:positive} and I already want to move there"),
    ("praise", "Nurses at {place:positive} took such good care of my dad this week"),
    ("praise", "Just finished {show:positive} and I need a whole day to recover, what a show"),
    ("praise", "Big thanks to @{retail:positive} for sorting out my missing parcel in one chat"),
    ("praise", "{airline:positive} crew made my daughter's first flight magical"),
    ("praise", "Never had a smoother delivery than with {tech:positive}"),
    ("praise", "{food:positive} new menu item is ridiculously good"),
    # comparisons: one up, one down
    ("comparison", "Left {telecom:negative} for {telecom2:positive} and I finally have signal in my kitchen"),
    ("comparison", "{airline:positive} legroom makes {airline2:negative} feel like a cattle truck"),
    ("comparison", "{food:positive} burgers beat {food2:negative} every time"),
    ("comparison", "Switched from {bank:negative} to {bank2:positive}, no more surprise fees"),
    ("comparison", "My {product:positive} outlasts the {product2:negative} by a full day"),
    ("comparison", "{retail:positive} prices are fair, {retail2:negative} just keeps creeping up"),
    ("comparison", "{tech:positive} actually answers support tickets. {tech2:negative} never does"),
    ("comparison", "Drove a {car:negative} for five years, the {car2:positive} is in another league"),
    ("comparison", "{team:positive} deserved that win, {team2:negative} didn't turn up"),
    # mixed: one aspect each way, or both ways on one (neutral)
    ("mixed", "{food:positive} food is great but the {place:negative} location is filthy"),
    ("mixed", "Love the {product:positive}, but {tech:negative} support made setting it up a nightmare"),
    ("mixed", "{person:positive} was amazing, shame {place:negative} venue had the worst sound ever"),
    ("mixed", "The {product:positive} is gorgeous, {retail:negative} delivery took three weeks though"),
    ("mixed", "{airline:negative} lost my bag but {airport:positive} staff found it in an hour"),
    ("mixed", "{show:neutral} has great actors and a terrible script, can't decide"),
    # questions and plain mentions: neutral
    ("question", "Does anyone know if {retail:neutral} price matches online?"),
    ("question", "Is {tech:neutral} down for anyone else?"),
    ("question", "Thinking of switching to {telecom:neutral}, anyone have it in {place:neutral}?"),
    ("question", "Which is better for travel, the {product:neutral} or the {product2:neutral}?"),
    ("question", "Anyone flying {airline:neutral} out of {airport:neutral} tomorrow morning?"),
    ("question", "What time does {food:neutral} stop serving breakfast?"),
    ("question", "Has {bank:neutral} changed its app login? Asking for my mum"),
    ("question", "Who's watching {show:neutral} tonight?"),
    ("news", "{airline:neutral} announces new routes from {airport:neutral} starting in spring"),
    ("news", "{retail:neutral} to open 40 new stores next year"),
    ("news", "{car:neutral} unveils its new electric model at the {place:neutral} auto show"),
    ("news", "{person:neutral} arrives in {place:neutral} ahead of Friday's show"),
    ("news", "{team:neutral} confirm signing of a new goalkeeper"),
    ("news", "{tech:neutral} reports third quarter earnings on Thursday"),
    ("news", "{bank:neutral} names new chief executive"),
    ("news", "{telecom:neutral} and {telecom2:neutral} in talks over network sharing, report says"),
    ("news", "{food:neutral} testing a new breakfast menu in {place:neutral}"),
    ("news", "Just landed in {place:neutral}, heading to the hotel"),
    ("news", "Picked up a {product:neutral} at {retail:neutral} today"),
]

_SLOT = re.compile(r"\{(\w+?)(2?):(positive|neutral|negative)\}")
_HANDLE = re.compile(r"^[@#]")


def _label_span(surface: str) -> tuple[int, int]:
    """(offset, length) of the labelled part of a surface form inside it: without a leading @/#
    or article ("the Lakers" -> "Lakers")."""
    lead = 1 if _HANDLE.match(surface) else 4 if surface[:4] in ("the ", "The ") else 0
    return lead, len(surface) - lead


def render(template: str, rng: random.Random) -> dict:
    """One post {"text", "category"?, "aspects": [{"term", "start", "end", "sentiment"}]}."""
    chosen: dict[tuple[str, str], str] = {}
    text, aspects, pos = "", [], 0
    for m in _SLOT.finditer(template):
        kind, second, sentiment = m.groups()
        text += template[pos:m.start()]
        pool = ENTITIES[kind]
        if (kind, second) not in chosen:
            other = chosen.get((kind, "" if second else "2"))
            chosen[(kind, second)] = rng.choice([e for e in pool if e != other])
        surface = chosen[(kind, second)]
        if text.endswith("@"):  # the template writes the handle sign itself
            surface = surface.lstrip("@")
        if surface.startswith("the ") and (not text or text.endswith(". ")):
            surface = "The" + surface[3:]
        lead, length = _label_span(surface)
        start = len(text) + lead
        aspects.append({"term": surface[lead:lead + length], "start": start, "end": start + length,
                        "sentiment": sentiment})
        text += surface
        pos = m.end()
    text += template[pos:]
    return {"text": text, "aspects": aspects}


def _vary(post: dict, rng: random.Random) -> dict:
    """Surface noise people add: lower case, a trailing emoji or hashtag. Offsets stay valid
    (only case changes in place and text is appended)."""
    if rng.random() < 0.15:
        post["text"] = post["text"].lower()
        for a in post["aspects"]:
            a["term"] = post["text"][a["start"]:a["end"]]
    tail = rng.choice(["", "", "", " 🙄", " 😡", " 🙌", " 😂", " #fail", " smh", " lol", "!!"])
    post["text"] += tail
    return post


def generate(n: int, seed: int = 7) -> list[dict]:
    """`n` posts (gold JSONL records with ids `synth-brand-<i>`), the same for the same seed."""
    rng = random.Random(seed)
    posts = []
    for i in range(n):
        category, template = rng.choice(TEMPLATES)
        post = _vary(render(template, rng), rng)
        posts.append({"id": f"synth-brand-{i:05d}", "category": category, **post})
    return posts


def to_example(post: dict) -> Example:
    """A gold post (character-offset aspects) as a training Example: the words as the serving
    tokenizer cuts them (lrsa.text), every word outside the aspects labelled O."""
    words = tokenize_words(post["text"])
    spans = []
    for a in post["aspects"]:
        inside = [i for i, (_, s, e) in enumerate(words) if s < a["end"] and e > a["start"]]
        if not inside or words[inside[0]][1] != a["start"] or words[inside[-1]][2] != a["end"]:
            raise ValueError(f"post {post.get('id')!r}: aspect {a['term']!r} does not fall on word boundaries")
        spans.append((inside[0], inside[-1] + 1, POLARITY[a["sentiment"]]))
    return Example(words=[w for w, _, _ in words], image_id=str(post.get("id", "")), spans=spans,
                   terms=[a["term"] for a in post["aspects"]])


def examples(n: int, seed: int = 7) -> list[Example]:
    return [to_example(p) for p in generate(n, seed)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    for post in generate(a.n, a.seed):
        sys.stdout.write(json.dumps(post, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
