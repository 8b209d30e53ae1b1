"""The ingest actor's scheduler (workers/ingest/batch_scheduler.py) on plain fakes: no Kafka, no Ray, no
sleeping (an injectable clock). A fake stage answers each submitted batch when the test says so,
through `ready`/`result`, the two functions the actor fills with ray.wait/ray.get."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from lrsa.schemas import Post, SourceRef
from workers.ingest.batch_scheduler import BatchScheduler
from workers.stages.api import WorkItem
from repo_paths import REPO

ROOT = REPO


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeStage:
    """A stage pool: `answer(items) -> (kind, payload)` decides each call's outcome; calls finish
    when the test calls `finish()` (or at once with auto=True)."""

    def __init__(self, name: str, answer=None, slots: int = 1) -> None:
        self.stage = name
        self.answer = answer or (lambda items: ("ok", [tag(i, name) for i in items]))
        self.calls: list[list[str]] = []   # post ids of each submitted batch
        self.running: dict[int, list[WorkItem]] = {}
        self.released: list[int] = []
        self.no_actor = False
        self._n = 0

    def submit(self, items):
        if self.no_actor:
            return None, -1
        self._n += 1
        ref = (self.stage, self._n)
        self.running[self._n] = items
        self.calls.append([i.post.id for i in items])
        return ref, self._n

    def release(self, actor: int) -> None:
        self.released.append(actor)


def tag(item: WorkItem, stage: str) -> WorkItem:
    item.timings_ms[stage] = 1.0
    return item


class Harness:
    def __init__(self, stages, clock=None, **overrides) -> None:
        self.clock = clock or Clock()
        self.settings = SimpleNamespace(batch_size=4, batch_max_wait_ms=20, max_inflight_batches=2,
                                        retry_initial_s=0.5, retry_max_s=30.0, retry_budget_attempts=3,
                                        retry_budget_s=60.0)
        for k, v in overrides.items():
            setattr(self.settings, k, v)
        self.stages = stages
        self.emitted: list[WorkItem] = []
        self.dead: list[tuple[str, str, str, str]] = []  # (post id, stage, kind, message)
        self.sched = BatchScheduler(
            self.settings, stages, ready=lambda refs: list(refs), result=self.result,
            emit=self.emitted.append, dead_letter=lambda item, stage, kind, msg: self.dead.append(
                (item.post.id, stage, kind, msg)),
            clock=self.clock, perf_clock=self.clock, jitter=lambda a, b: 1.0)

    def result(self, ref):
        stage = next(s for s in self.stages if s.stage == ref[0])
        return stage.answer(stage.running.pop(ref[1]))

    def add(self, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            self.sched.add(item(i))

    def run(self, limit: int = 1000) -> None:
        """Drive the scheduler as the loop does until nothing is left, moving the clock on."""
        for _ in range(limit):
            if not self.sched.busy:
                return
            if self.sched.due():
                self.sched.submit_pending()
            self.sched.advance()
            self.clock.t += 0.1
        raise AssertionError("the scheduler did not finish")


def item(i: int) -> WorkItem:
    return WorkItem(post=Post(id=f"p{i}", text=f"post {i}"), source=SourceRef(topic="posts", partition=0, offset=i))


def ids(items) -> list[str]:
    return [i.post.id for i in items]


def test_the_scheduler_imports_neither_kafka_nor_ray() -> None:
    tree = ast.parse((ROOT / "workers" / "ingest" / "batch_scheduler.py").read_text(encoding="utf-8"))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert not [n for n in names if n.split(".")[0] in {"kafka", "ray"}]
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, workers.ingest.batch_scheduler, workers.stages.api, lrsa.schemas; "
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'kafka', 'ray'}))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_a_full_batch_goes_at_once_and_a_partial_one_after_its_max_wait() -> None:
    stage = FakeStage("score")
    h = Harness([stage])
    h.add(3)
    assert not h.sched.due()                    # 3 of 4, no time passed
    h.clock.t += 0.019
    assert not h.sched.due()
    h.clock.t += 0.002                          # 21 ms > batch_max_wait_ms
    assert h.sched.due()
    h.add(1, start=3)
    assert h.sched.due()
    h.add(5, start=4)                           # 9 pending: two full batches and one post
    h.sched.submit_pending()
    assert stage.calls == [["p0", "p1", "p2", "p3"], ["p4", "p5", "p6", "p7"]]
    assert ids(h.sched.pending) == ["p8"]       # max_inflight_batches (2) reached: it waits
    assert h.sched.due(now=True) and not h.sched.due()  # the max wait runs again from the submit


def test_items_go_through_two_stages_in_order_and_are_emitted_once() -> None:
    first, second = FakeStage("rationale"), FakeStage("score")
    h = Harness([first, second])
    seen = []
    second.answer = lambda items: (seen.append(sorted(items[0].timings_ms)) or ("ok", [tag(i, "score") for i in items]))
    h.add(10)
    h.run()
    assert sorted(ids(h.emitted), key=lambda s: int(s[1:])) == [f"p{i}" for i in range(10)]
    assert len(h.emitted) == 10 and not h.dead
    assert all(list(i.timings_ms) == ["rationale", "score"] for i in h.emitted)
    assert seen and all(s == ["rationale"] for s in seen)   # the second stage only saw finished first-stage items
    assert sum(map(len, first.calls)) == sum(map(len, second.calls)) == 10
    assert len(first.released) == len(first.calls) and len(second.released) == len(second.calls)


def test_a_transient_failure_is_retried_after_a_back_off_and_then_succeeds() -> None:
    failures = {"n": 1}
    stage = FakeStage("score")

    def answer(items):
        if failures["n"]:
            failures["n"] -= 1
            return "transient", "TransientError: the service hiccupped"
        return "ok", items

    stage.answer = answer
    h = Harness([stage])
    h.add(4)
    h.sched.submit_pending()
    h.sched.advance()                            # fails: retry in retry_initial_s (0.5 s, jitter 1.0)
    assert not h.emitted and len(stage.calls) == 1
    h.clock.t += 0.4
    h.sched.advance()
    assert len(stage.calls) == 1                 # still backing off
    h.clock.t += 0.2
    h.sched.advance()                            # resubmitted
    assert len(stage.calls) == 2
    h.sched.advance()                            # succeeds
    assert ids(h.emitted) == ["p0", "p1", "p2", "p3"] and not h.dead and not h.sched.busy
    assert h.sched.metrics.drain()  # retries and errors were counted


def fails_on(poison: str, kind: str, message: str):
    """A stage answer that fails (kind, message) every batch holding `poison` and passes the rest."""
    def answer(items):
        return (kind, message) if poison in ids(items) else ("ok", items)
    return answer


def test_a_poison_post_with_a_nonretryable_error_is_isolated_and_dead_lettered() -> None:
    stage = FakeStage("score")
    poison = "p17"
    stage.answer = fails_on(poison, "nonretryable", "NonRetryable: image is not decodable")
    h = Harness([stage], batch_size=32)
    h.add(32)
    h.run()
    assert len(h.emitted) == 31 and poison not in ids(h.emitted)
    assert len(set(ids(h.emitted))) == 31
    assert h.dead == [(poison, "score", "nonretryable", "NonRetryable: image is not decodable")]
    # bisection, not one call per post: 32 -> 16 -> 8 -> 4 -> 2 -> 1 on the poison's side
    assert len(stage.calls) <= 1 + 2 * 5


def test_a_post_that_always_fails_transiently_spends_its_budget_and_is_bisected_out() -> None:
    stage = FakeStage("score")
    poison = "p2"
    stage.answer = fails_on(poison, "error", "ValueError: boom")
    h = Harness([stage], batch_size=8, retry_budget_attempts=3)
    h.add(8)
    h.run(limit=10_000)
    assert sorted(ids(h.emitted)) == sorted(f"p{i}" for i in range(8) if f"p{i}" != poison)
    assert h.dead == [(poison, "score", "error", "ValueError: boom")]
    alone = [c for c in stage.calls if c == [poison]]
    assert len(alone) == 3                     # the single post gets the full budget before it is dead-lettered
    assert stage.calls[:3] == [[f"p{i}" for i in range(8)]] * 3  # the whole batch first spends its budget


def test_the_time_budget_also_ends_the_retries() -> None:
    stage = FakeStage("score", answer=lambda items: ("transient", "TransientError: slow"))
    h = Harness([stage], batch_size=1, retry_budget_attempts=100, retry_budget_s=2.0)
    h.add(1)
    h.run(limit=10_000)
    assert h.dead and h.dead[0][:3] == ("p0", "score", "transient")
    assert len(stage.calls) < 10


def test_a_pool_without_actors_holds_the_batch_until_one_is_back() -> None:
    stage = FakeStage("score")
    stage.no_actor = True
    h = Harness([stage])
    h.add(4)
    h.sched.submit_pending()
    for _ in range(20):
        h.clock.t += 0.5
        h.sched.advance()
    assert not stage.calls and h.sched.busy and not h.dead
    stage.no_actor = False
    h.run()
    assert ids(h.emitted) == ["p0", "p1", "p2", "p3"]


def test_backpressure_is_wanted_while_the_queues_are_full_and_not_after() -> None:
    stage = FakeStage("score")
    h = Harness([stage], batch_size=4, max_inflight_batches=2)
    assert not h.sched.full()
    h.add(7)
    assert not h.sched.full()                  # 7 < batch_size x max_inflight_batches
    h.add(1, start=7)
    assert h.sched.full()                      # 8 pending posts
    h.sched.submit_pending()
    assert h.sched.full()                      # 2 batches running: stage 0 is full
    assert h.sched.counts() == ([0], [2])
    h.sched.advance()                          # both finish
    assert not h.sched.full() and len(h.emitted) == 8
    # batches waiting to retry hold no slot, but no more than 4 x max_inflight_batches are held
    stage.answer = lambda items: ("down", "TransientError: outage")
    h.add(32, start=8)
    h.sched.submit_pending()
    h.sched.advance()                          # 2 fail ("down": retried while it lasts), 2 more go in
    assert h.sched.inflight_running(0) == 0 and h.sched.full()
    h.sched.submit_pending()
    h.sched.advance()
    h.sched.submit_pending()
    h.sched.advance()
    h.sched.submit_pending()
    assert len(h.sched.batches) >= 4 * 2 and h.sched.full()
    stage.answer = lambda items: ("ok", items)
    h.run(limit=10_000)
    assert not h.sched.full() and len(h.emitted) == 40 and not h.dead


def test_a_stage_call_whose_actor_died_is_a_failure_like_any_other() -> None:
    calls = {"n": 0}
    stage = FakeStage("score")

    def answer(items):
        calls["n"] += 1
        return ("actor_died", "RayActorError: gone") if calls["n"] == 1 else ("ok", items)

    stage.answer = answer
    h = Harness([stage])
    h.add(4)
    h.run()
    assert ids(h.emitted) == ["p0", "p1", "p2", "p3"] and not h.dead


def test_drop_all_releases_running_calls_and_forgets_the_posts() -> None:
    stage = FakeStage("score")
    h = Harness([stage])
    h.add(10)
    h.sched.submit_pending()
    assert h.sched.drop_all() == 10
    assert sorted(stage.released) == [1, 2] and not h.sched.busy
