"""`lrsa bench live-quality` end to end: a tiny gold file through the real embedded Kafka, a real
tritonserver serving a tiny checkpoint and the worker's Ray driver, twice (rationale stage on,
then off); the reported scores must equal what lrsa.quality computes from the output records.

The rationale stage here is the echo stand-in (tests/stage_doubles.py), so the test stays fast;
the real SmolLM2 stage is what the command runs by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrsa.quality import load_gold, score, write_gold
from repo_paths import REPO, TESTS

ROOT = REPO

POSTS = [
    ("Chuck Bass is everything #MCM", [("Chuck Bass", "positive"), ("MCM", "neutral")]),
    ("Girona promoted to La Liga", [("Girona", "positive"), ("La Liga", "neutral")]),
    ("Donald Trump hotels have plummeted", [("Donald Trump", "negative")]),
    ("great day with Justin Bieber !", [("Justin Bieber", "positive")]),
    ("the new phone camera from Apple is awful", [("Apple", "negative")]),
    ("Messi scores again for Barcelona tonight", [("Messi", "positive"), ("Barcelona", "neutral")]),
]


def _gold(path: Path) -> Path:
    posts = []
    for i, (text, aspects) in enumerate(POSTS):
        spans = [{"term": t, "start": text.index(t), "end": text.index(t) + len(t), "sentiment": s}
                 for t, s in aspects]
        posts.append({"id": f"g{i}", "text": text, "aspects": spans, "lang": "en"})
    write_gold(path, posts)
    return path


def test_settings_need_one_gold_source_and_known_modes():
    from lrsa.settings import SettingsError, settings_from_args
    from lrsa_cli.live_quality import LiveQualitySettings
    from lrsa_cli.main import build_parser

    parser = build_parser()
    for argv in (["bench", "live-quality"], ["bench", "live-quality", "--gold", "g", "--dataset", "twitter2015"],
                 ["bench", "live-quality", "--gold", "g", "--modes", "with,sometimes"]):
        with pytest.raises(SettingsError):
            settings_from_args(LiveQualitySettings, parser.parse_args(argv))
    s = settings_from_args(LiveQualitySettings, parser.parse_args(
        ["bench", "live-quality", "--gold", "g", "--modes", "without"]))
    assert s.mode_list == ["without"]
    for argv in (["--modes", "with,gated"], ["--gate", "0.5,1.5"], ["--gate", "0.5,0.5"], ["--gate", "x"]):
        with pytest.raises(SettingsError):  # gated needs thresholds; thresholds lie in [0, 1], once each
            settings_from_args(LiveQualitySettings, parser.parse_args(["bench", "live-quality", "--gold", "g", *argv]))
    s = settings_from_args(LiveQualitySettings, parser.parse_args(
        ["bench", "live-quality", "--gold", "g", "--gate", "0.5,0.75"]))
    assert s.runs == [("with", "with", None), ("without", "without", None), ("gated@0.5", "gated", 0.5),
                      ("gated@0.75", "gated", 0.75)]
    s = settings_from_args(LiveQualitySettings, parser.parse_args(
        ["bench", "live-quality", "--gold", "g", "--modes", "gated,without", "--gate", "0.6"]))
    assert [name for name, _, _ in s.runs] == ["gated@0.6", "without"]


def test_dataset_split_becomes_gold_posts(data_dir):
    from lrsa_cli.live_quality import LiveQualitySettings, load_gold_posts

    posts, source = load_gold_posts(LiveQualitySettings(dataset="twitter2017", split="dev", data_dir=data_dir,
                                                        limit=7))
    assert source == "twitter2017/dev" and len(posts) == 7
    assert all(p.text[a.start:a.end] == a.term for p in posts for a in p.aspects)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.triton
@pytest.mark.ray
def test_live_quality_scores_what_the_pipeline_wrote(tiny_checkpoint: Path, tmp_path: Path) -> None:
    gold = _gold(tmp_path / "gold.jsonl")
    out, records = tmp_path / "report.json", tmp_path / "records"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "RAY_AUTH_MODE": "disabled", "LRSA_RATIONALE_PROCESSOR": "stage_doubles:EchoProcessor",
           "LRSA_RAY_NUM_CPUS": "4"}
    cmd = [sys.executable, "-m", "lrsa_cli.main", "bench", "live-quality", "--gold", str(gold),
           "--checkpoint", str(tiny_checkpoint), "--modes", "with,without", "--gate", "0.5", "--idle-s", "2",
           "--run-timeout-s", "240", "--triton-threads", "1", "--json", "--out", str(out),
           "--records-dir", str(records)]
    log = tmp_path / "bench.log"
    with open(log, "wb") as err:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, timeout=600)
    assert proc.returncode == 0, log.read_text()[-4000:]
    printed = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    report = json.loads(out.read_text())
    assert printed == report
    posts = load_gold(gold)
    assert report["gold"] == {"source": str(gold), "posts": 6, "aspects": 9}

    for mode in ("with", "without", "gated@0.5"):
        run = report["runs"][mode]
        results = [json.loads(line) for line in (records / f"results-{mode}.jsonl").read_text().splitlines()]
        assert sorted(r["post_id"] for r in results) == [f"g{i}" for i in range(6)]  # each post once
        assert run["results"] == 6 and run["dead_letters"] == 0 and run["consumed"] == 6
        assert run["scores"] == json.loads(json.dumps(score(posts, results)))
        assert run["scores"]["posts"]["missing"] == 0 and run["posts_per_s"] > 0
        used = [r["rationale_used"] for r in results]
        assert used == [bool(r["rationale"]) for r in results]
        assert run["sent_to_llm"] == sum(used) and run["share_sent"] == pytest.approx(sum(used) / 6)
        if mode == "gated@0.5":  # the gate's own decisions: text-only prescore for all, the LLM for some
            assert run["rationale_gate"] == 0.5 and all("prescore" in r["timings_ms"] for r in results)
            assert all(("score" in r["timings_ms"]) is r["rationale_used"] for r in results)
            assert all(("rationale" in r["model"]) is r["rationale_used"] for r in results)
            continue
        assert set(used) == ({True} if mode == "with" else {False})
        assert ("rationale" in results[0]["model"]) is (mode == "with")
        assert "score" in results[0]["timings_ms"]  # scored by the Triton stage

    w, wo = report["runs"]["with"], report["runs"]["without"]
    assert report["rationale_gain"]["jmasa_f1"] == pytest.approx(w["scores"]["jmasa"]["f1"] - wo["scores"]["jmasa"]["f1"])
    assert report["rationale_gain"]["mate_f1"] == pytest.approx(w["scores"]["mate"]["f1"] - wo["scores"]["mate"]["f1"])
    assert report["posts_per_s_ratio_with_over_without"] == pytest.approx(w["posts_per_s"] / wo["posts_per_s"])
    assert "posts consumed" in log.read_text() or "results," in log.read_text()  # progress lines
    g = report["gated"]["gated@0.5"]
    assert g["share_sent"] == report["runs"]["gated@0.5"]["share_sent"]
    assert g["jmasa_f1_minus_with"] == pytest.approx(report["runs"]["gated@0.5"]["scores"]["jmasa"]["f1"]
                                                    - w["scores"]["jmasa"]["f1"])
