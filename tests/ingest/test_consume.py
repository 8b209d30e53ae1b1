"""`lrsa consume TOPIC`: every kind of record the project writes, read back as one readable line
each (or as it is with --json-lines), bounded by --max and --idle-s; `lrsa --version`."""

from __future__ import annotations

import base64
import json

import pytest

from lrsa_cli.main import main
from streaming_helpers import produce
from workers.devstack.consume import describe

RESULT = {"schema_version": "1.1", "post_id": "p1", "text": "Delta lost my bag again",
          "aspects": [{"term": "Delta", "entity": "Delta Air Lines", "start": 0, "end": 5, "sentiment": "negative",
                       "confidence": 0.91}], "scored": True}
DEAD = {"schema_version": "1.0", "original_b64": base64.b64encode(b"{not json").decode(),
        "error": {"reason": "invalid_json", "error_class": "JSONDecodeError", "message": "Expecting property name"},
        "source": {"topic": "posts", "partition": 0, "offset": 7}}
AGGREGATE = {"entity": "Delta Air Lines", "window": "1m", "window_start": "2026-01-01T00:00:00Z",
             "window_end": "2026-01-01T00:01:00Z", "counts": {"positive": 1, "neutral": 0, "negative": 3},
             "mentions": 4, "net_sentiment": -0.5}
ALERT = {"type": "fired", "entity": "Delta Air Lines", "direction": "negative", "window": "1h",
         "window_start": "2026-01-01T11:00:00Z", "share": 0.75, "baseline_share": 0.28, "post_ids": ["a", "b"]}


def test_each_kind_of_record_reads_as_one_line():
    assert describe(json.dumps(RESULT).encode()) == 'p1: Delta negative 0.91  "Delta lost my bag again"'
    assert describe(json.dumps({**RESULT, "aspects": [], "scored": False}).encode()).startswith("p1: not scored")
    assert describe(json.dumps(DEAD).encode()) == \
        "dead letter invalid_json (Expecting property name) from posts/0@7: {not json"
    assert describe(json.dumps(AGGREGATE).encode()) == \
        "Delta Air Lines 1m 2026-01-01T00:00:00Z: 4 mentions, +1 ~0 -3, net -0.50"
    assert describe(json.dumps(ALERT).encode()) == ("alert fired Delta Air Lines: negative share 75% in the 1h "
                                                    "window from 2026-01-01T11:00:00Z against 28% before (2 posts)")
    assert describe(b"\xff plain") == "\ufffd plain" and describe(None) == "(tombstone)"


def test_consume_reads_a_topic_from_the_beginning_within_its_bounds(kafka_bootstrap, kafka_topic, capsys):
    topic = kafka_topic("consume")
    values = [json.dumps(x).encode() for x in (RESULT, DEAD, AGGREGATE, ALERT)] + [b"free text"]
    produce(kafka_bootstrap, topic, [(None, v) for v in values])
    assert main(["consume", topic, "--from-beginning", "--bootstrap-servers", kafka_bootstrap, "--idle-s", "2"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [x.split("] ", 1)[1] for x in lines] == [describe(v) for v in values]
    assert lines[0].startswith("[0:0] ") and "5 records from" in err
    assert main(["consume", topic, "--from-beginning", "--bootstrap-servers", kafka_bootstrap, "--max", "2",
                 "--json-lines"]) == 0
    out, _ = capsys.readouterr()
    assert [json.loads(x) for x in out.splitlines()] == [RESULT, DEAD]
    # without --from-beginning only new records: none come, so it ends after --idle-s
    assert main(["consume", topic, "--bootstrap-servers", kafka_bootstrap, "--idle-s", "1"]) == 0
    assert capsys.readouterr().out == ""


def test_a_missing_topic_is_a_clear_error(kafka_bootstrap, capsys):
    assert main(["consume", "no-such-topic-here", "--bootstrap-servers", kafka_bootstrap]) == 2
    assert "topic no-such-topic-here not found on Kafka" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("lrsa 0.1")
