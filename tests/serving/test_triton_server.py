"""The tritonserver launcher against a real tritonserver process (Python backend, tiny model)."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from serving.triton_server import PYTHON_MODEL, TritonServer, render_repository, set_parameter

pytestmark = pytest.mark.triton


def _metrics(server: TritonServer) -> str:
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        return r.read().decode()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_render_repository_points_the_model_at_the_checkpoint(tmp_path: Path, tiny_checkpoint: Path) -> None:
    repo = render_repository(tmp_path, tiny_checkpoint, instance_count=2, threads=3, max_queue_delay_us=500)
    config = (repo / PYTHON_MODEL / "config.pbtxt").read_text()
    assert f'string_value: "{tiny_checkpoint.resolve()}"' in config
    assert 'key: "torch_threads" value: { string_value: "3" }' in config
    assert "count: 2" in config and "max_queue_delay_microseconds: 500" in config
    assert (repo / PYTHON_MODEL / "1" / "model.py").exists()
    with pytest.raises(ValueError):
        set_parameter(config, "no_such_parameter", "x")


def test_server_serves_the_model_and_its_metrics(triton_server: TritonServer) -> None:
    import tritonclient.grpc as grpcclient

    assert triton_server.ready()
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    assert client.is_model_ready(PYTHON_MODEL)
    inputs = []
    for name in ("input_ids", "attention_mask", "rationale_ids", "rationale_mask", "image_desc_ids", "image_desc_mask"):
        x = grpcclient.InferInput(name, [2, 5], "INT64")
        x.set_data_from_numpy(np.ones((2, 5), dtype=np.int64))
        inputs.append(x)
    logits = client.infer(PYTHON_MODEL, inputs).as_numpy("logits")
    assert logits.shape == (2, 5, 7) and np.isfinite(logits).all()
    client.close()
    text = _metrics(triton_server)
    assert f'nv_inference_request_success{{model="{PYTHON_MODEL}",version="1"}}' in text


def test_lrsa_serve_runs_until_sigterm_then_stops_cleanly(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import re
    import signal
    import subprocess
    import sys

    import psutil

    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "lrsa_cli.main", "serve", "--checkpoint", str(tiny_checkpoint), "--threads", "1",
           "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--repository", str(tmp_path / "repo")]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "tritonserver ready" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        ready = re.search(r"grpc 127\.0\.0\.1:(\d+) .*metrics http://127\.0\.0\.1:(\d+)/metrics", log.read_text())
        assert ready, log.read_text()[-3000:]
        grpc_port, metrics_port = int(ready.group(1)), int(ready.group(2))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            assert "nv_inference_request_success" in r.read().decode()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any(c.name() == "tritonserver" for c in children)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert _port_free(grpc_port) and _port_free(metrics_port)


def test_a_model_that_cannot_load_fails_start_with_the_log(tmp_path: Path, start_triton) -> None:
    repo = render_repository(tmp_path / "repo", tmp_path / "no-such-checkpoint")
    with pytest.raises((RuntimeError, TimeoutError), match="no-such-checkpoint"):
        start_triton(repository=repo)


def test_scorer_passes_tls_and_auth_header_through(tmp_path: Path, start_triton, tiny_checkpoint: Path) -> None:
    import subprocess

    from lrsa.schemas import Post, SourceRef
    from workers.stages.score import ScoreProcessor, ScorerSettings
    from workers.stages.api import TransientError, WorkItem

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    server = start_triton(extra_args=["--grpc-use-ssl=true", f"--grpc-server-cert={cert}", f"--grpc-server-key={key}",
                                      "--grpc-restricted-protocol=inference:lrsa-token=s3cret"])
    TOKEN_HEADER = "triton-grpc-protocol-lrsa-token"  # Triton prefixes the restricted key
    items = [WorkItem(post=Post(id="1", text="Chuck Bass is everything #MCM"),
                      source=SourceRef(topic="t", partition=0, offset=0))]
    base = dict(url=server.grpc_url, checkpoint=tiny_checkpoint, retries=0, timeout_s=5)

    def score(**options) -> list[WorkItem]:
        scorer = ScoreProcessor(ScorerSettings(**base, **options))
        try:
            return scorer.process(items)
        finally:
            scorer.close()

    assert score(ssl=True, root_certificates=cert, headers={TOKEN_HEADER: "s3cret"})[0].aspects is not None
    with pytest.raises(TransientError):  # no token: refused (an operator must fix the config; posts wait)
        score(ssl=True, root_certificates=cert)
    # plaintext against a TLS port: the start-up check fails once, naming the setting, instead of
    # every batch retrying against a port that will never answer in plaintext
    with pytest.raises(ConnectionError, match="LRSA_SCORER_URL"):
        score(headers={TOKEN_HEADER: "s3cret"}, startup_timeout_s=2)


def test_dynamic_batcher_merges_concurrent_requests(triton_server: TritonServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton_server.grpc_url)

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics(PYTHON_MODEL, as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    def infer(length: int) -> np.ndarray:  # one post per request, of different lengths (ragged batching)
        inputs = []
        for name in ("input_ids", "attention_mask", "rationale_ids", "rationale_mask", "image_desc_ids",
                     "image_desc_mask"):
            x = grpcclient.InferInput(name, [1, length], "INT64")
            x.set_data_from_numpy(np.ones((1, length), dtype=np.int64))
            inputs.append(x)
        return client.infer(PYTHON_MODEL, inputs).as_numpy("logits")

    before = counts()
    with ThreadPoolExecutor(16) as pool:
        outputs = list(pool.map(infer, [4 + i % 5 for i in range(64)]))
    assert [o.shape for o in outputs] == [(1, 4 + i % 5, 7) for i in range(64)]
    # Triton updates its statistics after it sends the response: a request just answered may not
    # be counted yet (once seen: 63 of 64), so read them until all are in, within a deadline
    deadline = time.monotonic() + 10
    while (now := counts())[0] - before[0] < 64 and time.monotonic() < deadline:
        time.sleep(0.1)
    inferences, executions = (a - b for a, b in zip(now, before))
    client.close()
    assert inferences == 64 and executions < 64  # several requests per forward pass
