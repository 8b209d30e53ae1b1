"""Score stage: the fused SLM behind Triton, called from the pipeline's Ray actors.

Per batch: tokenise here (lrsa.predict.encode_batch, see docs/serving.md for why client side),
split into requests of `request_batch_size` posts sent concurrently over gRPC (Triton's dynamic
batcher merges them with other workers' requests), decode the logits into aspects with character
offsets. A failed call is retried with exponential backoff and jitter; repeated failures open a
circuit breaker and the stage raises TransientError, so the pipeline waits and does not commit
(posts are never dead-lettered because the server is down).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from prometheus_client import Counter, Gauge, Histogram
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lrsa.offline_models import DEFAULT_MODEL
from lrsa.settings import LrsaSettings
from lrsa.backoff import Backoff
from workers.stages.circuit import CircuitBreaker, CircuitState, call_with_retries
from workers.stages.api import NonRetryable, TransientError, WorkItem

log = logging.getLogger(__name__)

REQUESTS = Counter("lrsa_scorer_requests_total", "Triton inference requests sent by the scorer", ["outcome"])
FAILURES = Counter("lrsa_scorer_failures_total", "Failed scorer calls by kind", ["kind"])
RETRIES = Counter("lrsa_scorer_retries_total", "Retries of a failed Triton call")
LATENCY = Histogram("lrsa_scorer_request_seconds", "Latency of one scorer call to Triton (all its requests)",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BATCH_SIZE = Histogram("lrsa_scorer_batch_posts", "Posts per scorer batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
CIRCUIT = Gauge("lrsa_scorer_circuit_state", "Scorer circuit breaker: 0 closed, 1 half-open, 2 open")
POSTS = Counter("lrsa_scorer_posts_total", "Posts scored")
ENDPOINT_BATCHES = Counter("lrsa_scorer_endpoint_batches_total", "Batches per Triton endpoint (url) by outcome: "
                           "ok, or failed (after its retries; the batch then goes to the next endpoint)",
                           ["url", "outcome"])
FAILOVERS = Counter("lrsa_scorer_failovers_total", "Batches moved to another Triton endpoint after one failed")
# Known label values at 0 from the first scrape (a counter born with its first increment hides it from rate()).
for _outcome in ("ok", "error"):
    REQUESTS.labels(_outcome)
for _kind in ("timeout", "unavailable", "invalid_request", "server_error", "circuit_open", "not_ready"):
    FAILURES.labels(_kind)

# gRPC statuses that a retry cannot fix: the request itself is wrong.
PERMANENT_STATUSES = {"StatusCode.INVALID_ARGUMENT", "StatusCode.UNIMPLEMENTED"}
MAX_GRPC_MESSAGE = 2**31 - 1


class ScorerSettings(LrsaSettings):
    """Client side of the Triton-hosted fused SLM (env LRSA_SCORER_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_SCORER_", env_nested_delimiter="__", extra="ignore")

    url: str = Field("127.0.0.1:8001", description="Triton gRPC address host:port, or several comma separated "
                     "(replicas): batches go round-robin over them, and a batch whose endpoint fails goes to the "
                     "next; an endpoint with an open circuit is skipped until its trial call")
    protocol: Literal["grpc"] = Field("grpc", description="wire protocol (gRPC only)")
    model_name: str = Field("lrsa_fused", description="model in the Triton repository (lrsa_fused | lrsa_fused_onnx)")
    model_version: str = Field("", description="model version; empty = the server's latest")
    checkpoint: Path = Field(DEFAULT_MODEL, description="checkpoint folder of the "
                             "served model: its tokenizer and config encode the posts client side")
    timeout_s: float = Field(10.0, gt=0, description="per-request timeout (seconds)")
    retries: int = Field(3, ge=0, description="retries of a failed call before giving up on this attempt")
    backoff_base_s: float = Field(0.1, gt=0, description="first retry delay (doubles each retry, full jitter)")
    backoff_max_s: float = Field(2.0, gt=0, description="longest retry delay")
    circuit_failures: int = Field(3, ge=1, description="consecutive failed calls that open the circuit")
    circuit_reset_s: float = Field(2.0, gt=0, description="time the circuit stays open before a trial call")
    request_batch_size: int = Field(32, ge=1, description="posts per Triton request; a batch is split into "
                                                          "requests sent concurrently")
    concurrency: int = Field(4, ge=1, description="requests in flight per scorer at most")
    pad_multiple: int = Field(16, ge=1, description="pad token lengths to a multiple of this (fewer distinct "
                                                    "shapes, so Triton batches more requests together)")
    client: Literal["aio", "sync"] = Field("sync", description="tritonclient gRPC flavour: sync client on a thread "
                                                               "pool (measured faster, docs/serving.md), or asyncio "
                                                               "client on a private loop thread")
    ssl: bool = Field(False, description="use TLS to reach Triton")
    root_certificates: Path | None = Field(None, description="PEM root certificates (TLS)")
    private_key: Path | None = Field(None, description="PEM client private key (mutual TLS)")
    certificate_chain: Path | None = Field(None, description="PEM client certificate chain (mutual TLS)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra gRPC metadata sent with each "
                                                                      "request, e.g. an auth token")
    startup_timeout_s: float = Field(30.0, gt=0, description="a new score actor waits at most this for Triton at "
                                     "`url` to be reachable with its model ready, then fails (the worker does not "
                                     "start) with a message naming LRSA_SCORER_URL")
    reconnect_backoff_max_ms: int = Field(1000, ge=100, description="cap of gRPC's reconnect backoff, so that a "
                                                                    "restarted server is found again quickly")


class Transport(Protocol):
    def infer_many(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]: ...
    def ready(self) -> bool: ...
    def close(self) -> None: ...


def _channel_args(s: ScorerSettings) -> list[tuple[str, int]]:
    # Passing channel args replaces tritonclient's defaults, so the message limits are repeated.
    return [("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", s.reconnect_backoff_max_ms)]


def _client_kwargs(s: ScorerSettings) -> dict:
    return dict(url=s.url, ssl=s.ssl, channel_args=_channel_args(s),
                root_certificates=str(s.root_certificates) if s.root_certificates else None,
                private_key=str(s.private_key) if s.private_key else None,
                certificate_chain=str(s.certificate_chain) if s.certificate_chain else None)


def _inputs(module, arrays: dict[str, np.ndarray]) -> list:
    inputs = []
    for name, array in arrays.items():
        x = module.InferInput(name, list(array.shape), "INT64")
        x.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.int64))
        inputs.append(x)
    return inputs


class AioTransport:
    """tritonclient.grpc.aio on an event loop owned by a private thread: Ray actor methods are
    synchronous, so process() hands the coroutines to that loop and waits for them."""

    def __init__(self, s: ScorerSettings):
        import tritonclient.grpc.aio as grpcclient

        self._module, self._s = grpcclient, s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scorer-grpc-loop", daemon=True)
        self._thread.start()
        self._client = self._run(self._make_client())
        self._limit = asyncio.Semaphore(s.concurrency)

    async def _make_client(self):
        return self._module.InferenceServerClient(**_client_kwargs(self._s))

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        async with self._limit:
            result = await self._client.infer(self._s.model_name, _inputs(self._module, arrays),
                                              model_version=self._s.model_version,
                                              client_timeout=self._s.timeout_s, headers=self._s.headers)
        return result.as_numpy("logits")

    async def _gather(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        return list(await asyncio.gather(*(self._infer(r) for r in requests)))

    def infer_many(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        return self._run(self._gather(requests))

    async def _ready(self) -> bool:
        kw = dict(headers=self._s.headers, client_timeout=min(self._s.timeout_s, 2.0))
        return (await self._client.is_server_ready(**kw)
                and await self._client.is_model_ready(self._s.model_name, self._s.model_version, **kw))

    def ready(self) -> bool:
        return self._run(self._ready())

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


class SyncTransport:
    """tritonclient.grpc (blocking) on a thread pool: concurrent requests without an event loop."""

    def __init__(self, s: ScorerSettings):
        import tritonclient.grpc as grpcclient

        self._module, self._s = grpcclient, s
        self._client = grpcclient.InferenceServerClient(**_client_kwargs(s))
        self._pool = ThreadPoolExecutor(s.concurrency, thread_name_prefix="scorer-grpc")

    def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        result = self._client.infer(self._s.model_name, _inputs(self._module, arrays),
                                    model_version=self._s.model_version,
                                    client_timeout=self._s.timeout_s, headers=self._s.headers)
        return result.as_numpy("logits")

    def infer_many(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        return list(self._pool.map(self._infer, requests))

    def ready(self) -> bool:
        kw = dict(headers=self._s.headers, client_timeout=min(self._s.timeout_s, 2.0))
        return (self._client.is_server_ready(**kw)
                and self._client.is_model_ready(self._s.model_name, self._s.model_version, **kw))

    def close(self) -> None:
        self._pool.shutdown()
        self._client.close()


def failure_kind(e: Exception) -> str:
    status = e.status() if hasattr(e, "status") else None
    if isinstance(e, (TimeoutError, asyncio.TimeoutError)) or status == "StatusCode.DEADLINE_EXCEEDED":
        return "timeout"
    if status == "StatusCode.UNAVAILABLE":
        return "unavailable"
    if status in PERMANENT_STATUSES:
        return "invalid_request"
    return "server_error"


@dataclass
class Endpoint:
    """One Triton replica: its client and its own circuit breaker."""

    url: str
    transport: Transport
    circuit: CircuitBreaker


class ScorerError(NonRetryable, RuntimeError):
    """Triton rejected the request itself (bad input or a bug, not an outage): retrying cannot help;
    the pipeline splits the batch to find the post(s) at fault."""


class ScoreProcessor:
    """workers.stages.api.StageProcessor that scores posts with the Triton-hosted fused SLM."""

    name = "score"
    settings_class = ScorerSettings

    def __init__(self, settings: ScorerSettings | None = None):
        from transformers import AutoTokenizer

        from lrsa.calibration import ConfidenceCalibration
        from lrsa.model import load_config
        from lrsa.model_pack import ModelFileError, resolve_checkpoint

        self.settings = s = settings or ScorerSettings()
        if not s.url.strip():
            raise ValueError("LRSA_SCORER_URL (scorer setting `url`) is empty: set it to Triton's gRPC host:port")
        try:
            checkpoint = resolve_checkpoint(s.checkpoint)
        except ModelFileError as e:
            raise ValueError(f"LRSA_SCORER_CHECKPOINT: {e}") from None
        self.model_config = load_config(checkpoint)
        self.calibration = ConfidenceCalibration.from_dict(self.model_config.confidence_calibration)
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.endpoints: list[Endpoint] = []
        for url in [u.strip() for u in s.url.split(",") if u.strip()]:
            try:
                transport = (AioTransport if s.client == "aio" else SyncTransport)(s.model_copy(update={"url": url}))
            except Exception as e:  # noqa: BLE001 - a malformed address: say which setting
                raise ValueError(f"LRSA_SCORER_URL={s.url!r}: {url!r} is not a usable Triton gRPC address: {e}") from e
            self.endpoints.append(Endpoint(url, transport, CircuitBreaker(
                s.circuit_failures, s.circuit_reset_s, on_change=self._circuit_changed)))
        self._ep = self.endpoints[0]  # the endpoint the single-endpoint methods below work on
        self._turn = 0                # round-robin position
        self.backoff = Backoff(s.backoff_base_s, s.backoff_max_s)
        CIRCUIT.set(CircuitState.closed)
        self._await_server()

    def _await_server(self) -> None:
        """Start-up check with a deadline: a wrong or unreachable LRSA_SCORER_URL fails here, once,
        with the setting's name, instead of every batch retrying against nothing for ever."""
        s, deadline = self.settings, time.monotonic() + self.settings.startup_timeout_s
        while not self._any_ready():  # one ready replica is enough to start; the others join when up
            if time.monotonic() >= deadline:
                self.close()
                raise ConnectionError(
                    f"Triton at LRSA_SCORER_URL={s.url!r} is not reachable, or model {s.model_name!r} is not ready "
                    f"there, after {s.startup_timeout_s:g}s (LRSA_SCORER_STARTUP_TIMEOUT_S): start one with "
                    f"`lrsa serve` (or let `lrsa run --serve` start it), point --scorer-url at yours, or run "
                    f"without scoring: --no-score-enabled")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        from lrsa.gate import no_aspect_certainty
        from lrsa.predict import decode_batch, encode_batch, word_probabilities

        if not items:
            return items
        t0 = time.perf_counter()
        texts = [it.post.text for it in items]
        tensors, meta = encode_batch(self.tokenizer, self.model_config, texts,
                                     [it.rationale for it in items], [it.image_description for it in items],
                                     return_tensors="np")
        step = self.settings.request_batch_size
        starts = range(0, len(items), step)  # one request per `step` posts, sent concurrently
        requests = [{k: self._pad(v[i:i + step]) for k, v in tensors.items()} for i in starts]
        BATCH_SIZE.observe(len(items))
        aspects, none_certainty = [], []
        for i, logits in zip(starts, self._call(requests)):
            found = decode_batch(logits, meta[i:i + step], texts[i:i + step], self.calibration)
            # for the rationale gate: how sure the tagger is that a post without aspects has none
            none_certainty += [None if a else no_aspect_certainty(word_probabilities(row, m.first_token))
                               for row, m, a in zip(logits, meta[i:i + step], found)]
            aspects += found
        elapsed_ms = (time.perf_counter() - t0) * 1000
        versions = self.versions()
        for item, found, none, m in zip(items, aspects, none_certainty, meta):
            item.aspects = found
            item.no_aspect_certainty = none
            item.truncated = m.truncated
            item.timings_ms[self.name] = elapsed_ms
            item.model_versions.update(versions)
        POSTS.inc(len(items))
        return items

    def versions(self) -> dict[str, str]:
        version = self.settings.model_version or "latest"
        return {"slm": f"triton:{self.settings.model_name}/{version}", "slm_checkpoint": Path(self.settings.checkpoint).name}

    def healthy(self) -> bool:
        """An endpoint whose circuit is closed, or (while none is) one that says it and the model are ready."""
        if any(ep.circuit.state is CircuitState.closed for ep in self.endpoints):
            return True
        return self._any_ready()

    def close(self) -> None:
        for ep in self.endpoints:
            ep.transport.close()

    @property
    def transport(self) -> Transport:
        return self._ep.transport

    @property
    def circuit(self) -> CircuitBreaker:
        return self._ep.circuit

    def _any_ready(self) -> bool:
        for ep in self.endpoints:
            self._ep = ep
            if self._probe():
                return True
        return False

    def _pad(self, array: np.ndarray) -> np.ndarray:
        """Right-pad token ids/masks with 0 to a multiple of pad_multiple (no effect on results:
        padded positions are masked out)."""
        extra = -array.shape[1] % self.settings.pad_multiple
        return np.pad(array, ((0, 0), (0, extra))) if extra else array

    def _call(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """One batch on the next endpoint in turn; if it fails there (retries spent, circuit open),
        on the next one, and so on; TransientError only when every endpoint failed."""
        n = len(self.endpoints)
        first, self._turn = self._turn, (self._turn + 1) % n
        for k in range(n):
            self._ep = self.endpoints[(first + k) % n]
            try:
                out = self._call_endpoint(requests)
            except TransientError as e:
                ENDPOINT_BATCHES.labels(self._ep.url, "failed").inc()
                if k == n - 1:
                    raise
                FAILOVERS.inc()
                log.warning("Triton at %s failed (%s); the batch goes to the next endpoint", self._ep.url, e)
                continue
            ENDPOINT_BATCHES.labels(self._ep.url, "ok").inc()
            return out
        raise AssertionError("unreachable")

    def _call_endpoint(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """All requests of one batch to the current endpoint, through its circuit breaker and the retry loop."""
        url = self._ep.url
        if not self.circuit.allow():
            FAILURES.labels("circuit_open").inc()
            raise TransientError(f"Triton at {url} is unavailable (circuit open)")
        if self.circuit.state is CircuitState.half_open and not self._probe():
            self.circuit.record_failure()
            FAILURES.labels("not_ready").inc()
            raise TransientError(f"Triton at {url} is not ready (health check)")
        start = time.perf_counter()
        try:
            logits = call_with_retries(lambda: self._send(requests), retries=self.settings.retries,
                                       backoff=self.backoff, retryable=lambda e: not isinstance(e, ScorerError),
                                       on_retry=self._on_retry)
        except ScorerError:
            self.circuit.record_success()  # the server answered: it is up
            raise
        except Exception as e:
            self.circuit.record_failure()
            raise TransientError(f"Triton call failed after {self.settings.retries} retries: "
                                 f"{failure_kind(e)}: {e}") from e
        LATENCY.observe(time.perf_counter() - start)
        self.circuit.record_success()
        return logits

    def _send(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        try:
            out = self.transport.infer_many(requests)
        except Exception as e:
            kind = failure_kind(e)
            REQUESTS.labels("error").inc(len(requests))
            FAILURES.labels(kind).inc()
            if kind == "invalid_request":
                raise ScorerError(str(e)) from e
            raise
        REQUESTS.labels("ok").inc(len(requests))
        return out

    def _on_retry(self, e: Exception, attempt: int) -> None:
        RETRIES.inc()
        log.warning("Triton call failed (%s), retry %d/%d", failure_kind(e), attempt + 1, self.settings.retries)

    def _probe(self) -> bool:
        try:
            return bool(self.transport.ready())
        except Exception:
            return False

    @staticmethod
    def _circuit_changed(state: CircuitState) -> None:
        CIRCUIT.set(state)
        log.warning("scorer circuit breaker -> %s", state.name)
