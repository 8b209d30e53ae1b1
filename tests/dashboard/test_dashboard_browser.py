"""`lrsa dashboard` in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against the real embedded broker: the page rebuilds its history from the compacted
aggregates topic on start, then shows new counts, an alert (and its resolution) and a post pushed
over Server-Sent Events without a reload; a post whose text holds `<script>` renders as text.
Screenshot: runs/test-artifacts/dashboard.png."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streaming_helpers import produce, wait_for
from repo_paths import REPO

ARTIFACTS = REPO / "runs" / "test-artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> '


def aggregate(entity: str, minute: int, pos: int, neu: int, neg: int, ids: list[str]) -> tuple[bytes, bytes]:
    start = f"2026-12-04T10:{minute:02d}:00Z"
    mentions = pos + neu + neg
    value = {"schema_version": "1.0", "entity": entity, "window": "1m", "window_start": start,
             "window_end": f"2026-12-04T10:{minute + 1:02d}:00Z",
             "counts": {"positive": pos, "neutral": neu, "negative": neg}, "mentions": mentions,
             "mean_confidence": 0.8, "net_sentiment": (pos - neg) / mentions, "example_post_ids": ids,
             "updated_at": start}
    return f"{entity}|1m|{start}".encode(), json.dumps(value).encode()


def alert(kind: str, entity: str) -> tuple[bytes, bytes]:
    value = {"schema_version": "1.0", "type": kind, "entity": entity, "direction": "negative", "window": "1m",
             "window_start": "2026-12-04T10:02:00Z", "share": 0.75 if kind == "fired" else 0.2,
             "baseline_share": 0.2, "z": 4.4 if kind == "fired" else 0.3,
             "counts": {"positive": 1, "neutral": 4, "negative": 15},
             "baseline_counts": {"positive": 40, "neutral": 50, "negative": 22},
             "post_ids": ["p-evil"], "rationales": ["<b>bags lost</b> again"], "episode_id": "ep-1",
             "at": "2026-12-04T10:03:05Z"}
    return f"{entity}|negative".encode(), json.dumps(value).encode()


def result(post_id: str, text: str, term: str, entity: str) -> tuple[bytes, bytes]:
    start = text.index(term)
    value = {"schema_version": "1.1", "post_id": post_id, "text": text, "rationale": "<i>the author</i> is angry",
             "aspects": [{"term": term, "entity": entity, "start": start, "end": start + len(term),
                          "sentiment": "negative", "confidence": 0.93}],
             "source": {"topic": "posts", "partition": 0, "offset": 1}, "event_time": "2026-12-04T10:02:30Z",
             "event_time_source": "created_at", "lang": "en", "scored": True, "truncated": False}
    return post_id.encode(), json.dumps(value).encode()


@pytest.fixture
def chromium():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are needed (scripts/setup.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def start_dashboard(bootstrap: str, topics: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrsa_cli.main", "dashboard", "--bootstrap-servers", bootstrap,
         "--aggregates-topic", topics["aggregates"], "--alerts-topic", topics["alerts"],
         "--results-topic", topics["results"], "--http-port", "0", "--metadata-interval-s", "0.5"],
        cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    _started.append(proc)
    wait_for(lambda: "dashboard: http" in log.read_text() or proc.poll() is not None, 60,
             what="the dashboard to serve")
    assert proc.poll() is None, log.read_text()
    return proc, log.read_text().split("dashboard: ", 1)[1].split()[0]


_started: list[subprocess.Popen] = []


def stop(proc: subprocess.Popen, log: Path, what: str) -> None:
    proc.terminate()
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{what} did not stop within 30 s of SIGTERM:\n{log.read_text()[-3000:]}")
    assert code == 0, f"{what} exited {code}:\n{log.read_text()[-3000:]}"


@pytest.fixture(autouse=True)
def _stop_started():
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def dashboard(kafka_bootstrap, kafka_topic, tmp_path):
    topics = {"aggregates": kafka_topic("dash-agg", 2), "alerts": kafka_topic("dash-alerts", 1),
              "results": kafka_topic("dash-results", 1)}
    # history written before the dashboard starts: it must rebuild it from the topic
    produce(kafka_bootstrap, topics["aggregates"], [aggregate("Delta Air Lines", 0, 5, 3, 2, ["p-old"]),
                                                    aggregate("Delta Air Lines", 1, 4, 4, 2, ["p-old2"])])
    log = tmp_path / "dashboard.log"
    proc, url = start_dashboard(kafka_bootstrap, topics, log)
    yield url, topics, log
    stop(proc, log, "the dashboard")


def open_page(driver, url: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    # the page re-renders as updates come: an element found just before may be gone (retry)
    wait = WebDriverWait(driver, 90, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: d.find_element("id", "status").text == "live")
    return wait


def page(driver, script: str):
    """Run a script in the page: reads and clicks in one step, so a re-render in between cannot
    leave a stale element behind."""
    return driver.execute_script(script)


def board(driver) -> dict[str, dict[str, str]]:
    """entity -> {column class: text} of the leaderboard, read in one script call."""
    return driver.execute_script("""
        const out = {};
        for (const tr of document.querySelectorAll('#leaderboard tbody tr')) {
          const row = {};
          for (const td of tr.cells) row[td.className] = td.textContent;
          out[tr.dataset.entity] = row;
        }
        return out;""")


@pytest.mark.kafka
def test_dashboard_shows_live_counts_alerts_and_posts_in_chromium(kafka_bootstrap, dashboard, chromium):
    from selenium.webdriver.common.by import By

    url, topics, log = dashboard
    head = urllib.request.urlopen(url, timeout=10)
    assert "script-src 'self'" in head.headers["Content-Security-Policy"]
    assert url.startswith("http://127.0.0.1:")  # loopback by default

    driver = chromium
    wait = open_page(driver, url)

    def cell(entity: str, cls: str) -> str | None:
        return board(driver).get(entity, {}).get(cls)

    # history from the compacted topic: two windows, 9 positive, 7 neutral, 4 negative
    wait.until(lambda d: cell("Delta Air Lines", "c-mentions") == "20")
    assert (cell("Delta Air Lines", "c-pos"), cell("Delta Air Lines", "c-neg")) == ("9", "4")
    driver.execute_script("window.__sameLoad = 'yes'")

    # new records arrive: an upsert of window 10:01, a new window, a new entity, an alert, a post
    produce(kafka_bootstrap, topics["aggregates"], [aggregate("Delta Air Lines", 1, 4, 4, 12, ["p-evil"]),
                                                    aggregate("Delta Air Lines", 2, 1, 4, 15, ["p-evil"]),
                                                    aggregate("lufthansa", 2, 3, 1, 0, ["p-lh"])])
    produce(kafka_bootstrap, topics["alerts"], [alert("fired", "Delta Air Lines")])
    evil_text = EVIL + "Delta lost my bag again"
    produce(kafka_bootstrap, topics["results"], [result("p-evil", evil_text, "Delta", "Delta Air Lines")])

    wait.until(lambda d: cell("Delta Air Lines", "c-mentions") == "50")  # 10 + 20 (replaced 10) + 20
    assert (cell("Delta Air Lines", "c-pos"), cell("Delta Air Lines", "c-neu"),
            cell("Delta Air Lines", "c-neg")) == ("10", "11", "29")
    assert cell("lufthansa", "c-mentions") == "4"
    # key figures over the last hour of event time (all three windows), none before it
    kpi = page(driver, """return Object.fromEntries(['mentions', 'net', 'negative'].map(k => [k,
        [...document.querySelectorAll('#kpi-' + k + ' div')].map(d => d.textContent)]));""")
    assert kpi["mentions"][1] == "54" and kpi["negative"][1] == "54 %"  # 29 of 54 negative
    assert kpi["net"][1] == f"{(10 + 3 - 29) / 54:.2f}" and kpi["mentions"][2] == "no earlier period"
    # the export writes the board as shown
    csv_lines = page(driver, "return window.lrsaBoardCsv()").splitlines()
    assert csv_lines[0] == "entity,mentions,share_of_voice,positive,neutral,negative,net_sentiment"
    assert f"Delta Air Lines,50,{50 / 54:.4f},10,11,29,{(10 - 29) / 50:.4f}" in csv_lines
    assert len(csv_lines) == 1 + len(board(driver))
    # share of voice among the entities shown
    assert (cell("Delta Air Lines", "c-share"), cell("lufthansa", "c-share")) == ("93 %", "7 %")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#active-alerts li.fired"))
    # one list per state: the open episode is listed once, under active alerts, not in the feed too
    assert page(driver, "return document.querySelectorAll('#alert-feed li:not(.empty)').length") == 0
    active = page(driver, """const li = document.querySelector('#active-alerts li.fired');
        return {entity: li.querySelector('.alert-entity').textContent, text: li.textContent};""")
    assert active["entity"] == "Delta Air Lines"
    # in plain words, the window's start in the browser's local time; the rationale as text
    assert "negative mentions rose from 20 % to 75 % in the 1m window from " in active["text"]
    assert "(20 mentions)" in active["text"] and "this window: 1 positive, 4 neutral, 15 negative" in active["text"]
    assert "2026-12-04T10:02:00Z" not in active["text"] and "<b>bags lost</b> again" in active["text"]
    assert cell("Delta Air Lines", "c-alert") == "⚠"

    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#posts li.post"))
    post = page(driver, """const t = document.querySelector('#posts li.post .post-text');
        return {text: t.textContent, marks: [...t.querySelectorAll('mark')].map(m => m.textContent),
                elements: [...t.querySelectorAll('*')].map(e => e.tagName.toLowerCase())};""")
    assert post["text"] == evil_text
    assert post["marks"] == ["Delta"] and post["elements"] == ["mark"]  # no <script>, no <img>
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return window.__sameLoad") == "yes"  # no reload happened

    # before any click the chart shows the most mentioned entity
    wait.until(lambda d: d.find_element(By.ID, "detail").is_displayed())
    assert page(driver, "return document.getElementById('detail-title').textContent") == \
        "Delta Air Lines · 1m windows (the most mentioned; click a row for another)"
    # click-through: the entity's detail, then an example post id -> that post
    page(driver, "document.querySelector(\"#leaderboard tbody tr[data-entity='Delta Air Lines']\").click()")
    wait.until(lambda d: d.find_element(By.ID, "detail").is_displayed()
               and d.find_elements(By.CSS_SELECTOR, "#examples .post-link"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart .main-svg"))  # plotly drew the series
    page(driver, "document.querySelector(\"#examples .post-link[data-post-id='p-evil']\").click()")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#post-view .post-text"))
    assert page(driver, "return document.querySelector('#post-view .post-text').textContent") == evil_text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # the episode resolves: the active list empties, the feed keeps both events
    produce(kafka_bootstrap, topics["alerts"], [alert("resolved", "Delta Air Lines")])
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#active-alerts li.fired"))
    assert page(driver, "return document.querySelectorAll('#alert-feed li').length") == 2
    assert driver.execute_script("return window.__pwned") is None
    assert "Traceback" not in log.read_text()


@pytest.mark.kafka
def test_dashboard_follows_lrsa_aggregate_live(kafka_bootstrap, kafka_topic, chromium, tmp_path):
    """Results -> the real `lrsa aggregate` -> the page: the leaderboard's totals equal counts
    computed straight from the input, and the planted shift's alert (and no other) appears, while
    the page stays loaded. The aggregates and alerts topics do not exist when the page opens."""
    from aggregate_helpers import expected_windows, shift_sequence
    from aggregate_helpers import produce as produce_results

    uid = os.urandom(3).hex()
    topics = {"aggregates": f"dash-live-agg-{uid}", "alerts": f"dash-live-alerts-{uid}",
              "results": kafka_topic("dash-live-results", 1)}  # in event-time order
    dash_log = tmp_path / "dashboard.log"
    dash, url = start_dashboard(kafka_bootstrap, topics, dash_log)
    driver = chromium
    wait = open_page(driver, url)
    driver.execute_script("window.__sameLoad = 'yes'")

    window_ms, stable = 60_000, ["Lufthansa", "Netflix"]
    results = shift_sequence(window_ms, windows=8, per_window=20, shift_entity="Delta Air Lines", shift_at=5,
                             stable=stable)
    produce_results(kafka_bootstrap, topics["results"], results)
    agg_log = tmp_path / "aggregate.log"
    agg = subprocess.Popen(
        [sys.executable, "-m", "lrsa_cli.main", "aggregate", "--bootstrap-servers", kafka_bootstrap,
         "--input-topic", topics["results"], "--aggregates-topic", topics["aggregates"],
         "--alerts-topic", topics["alerts"], "--group-id", f"dash-live-{uid}", "--instance-id", uid,
         "--windows", "1m", "--allowed-lateness-s", "0", "--state-dir", str(tmp_path / "state"),
         "--metrics-port", "0", "--alert-baseline-windows", "3", "--alert-min-mentions", "10",
         "--alert-min-baseline-mentions", "30"],
        cwd=REPO, stdout=open(agg_log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    _started.append(agg)

    expected: dict[str, dict[str, int]] = {}
    for key, counts in expected_windows(results, "1m", window_ms).items():
        total = expected.setdefault(key.split("|")[0], {"positive": 0, "neutral": 0, "negative": 0})
        for s, n in counts.items():
            total[s] += n
    want = {e: {"c-mentions": str(sum(c.values())), "c-pos": str(c["positive"]), "c-neu": str(c["neutral"]),
                "c-neg": str(c["negative"])} for e, c in expected.items()}

    def shown() -> dict[str, dict[str, str]]:
        rows = board(driver)
        return {e: {k: rows[e][k] for k in ("c-mentions", "c-pos", "c-neu", "c-neg")} for e in rows}

    try:
        wait.until(lambda d: shown() == want)
        wait.until(lambda d: d.find_elements("css selector", "#active-alerts li.fired"))
    except Exception:
        print("aggregate log:\n", agg_log.read_text()[-4000:], "\ndashboard log:\n", dash_log.read_text()[-2000:])
        raise
    fired = driver.execute_script(
        "return [...document.querySelectorAll('#active-alerts li.fired, #alert-feed li.fired')]"
        ".map(li => li.dataset.entity)")
    assert set(fired) == {"Delta Air Lines"}  # the stable entities never alert
    assert driver.execute_script("return window.__sameLoad") == "yes"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "dashboard-aggregate.png"))
    stop(agg, agg_log, "lrsa aggregate")
    stop(dash, dash_log, "the dashboard")
