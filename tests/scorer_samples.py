"""Posts with and without a rationale or image description, shared by the scorer parity tests of
the serving room and the accurate tier's (training room)."""

from __future__ import annotations

from lrsa.schemas import Post, SourceRef
from workers.stages.api import WorkItem

TEXTS = [
    "RT @ltsChuckBass: Chuck Bass is everything #MCM",
    "Sam Hunt performs at Stagecoach #MusicFestival 2016",
    "Why does the Yankees' bullpen keep blowing leads?! Terrible night in New York",
    "ok",
    "Watching the Warriors vs Cavs tonight with @joe https://t.co/abc #NBAFinals",
    "The new iPhone camera is amazing, but the battery life ... not so much",
]
RATIONALES = ["Positive: the post praises Chuck Bass.", None, "Negative: blown leads.", None,
              "Neutral: a plain report.", "Mixed: camera good, battery bad."]
DESCRIPTIONS = [None, "A man on a stage with a microphone.", None, None,
                "Basketball players on a court.", "A phone on a table."]


def _items() -> list[WorkItem]:
    return [WorkItem(post=Post(id=str(i), text=t), source=SourceRef(topic="posts", partition=0, offset=i),
                     rationale=r, image_description=d)
            for i, (t, r, d) in enumerate(zip(TEXTS, RATIONALES, DESCRIPTIONS))]
