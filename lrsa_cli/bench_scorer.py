"""`lrsa bench scorer`: posts/s of the fused SLM through Triton vs called in-process, in one run.

Both paths do the same work on the same batches: encode (tokenise) -> forward -> decode into
aspects. In-process runs them one batch after the other; the Triton path runs ScoreProcessor
with `concurrency` batches in flight over gRPC (the dynamic batcher merges them), for each client
flavour (asyncio / sync). The paths take turns, a few batches each, so that the load of other
processes on a shared machine is spread over all of them. The in-process time is also split into encode / forward / decode, which
is what decides where tokenisation belongs (docs/serving.md).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from tqdm import tqdm

from lrsa.settings import LrsaSettings, data_dir_field

log = logging.getLogger(__name__)

BENCH_CACHE = Path(tempfile.gettempdir()) / "lrsa-bench"


class BenchScorerSettings(LrsaSettings):
    """`lrsa bench scorer` (env LRSA_BENCH_SCORER_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_BENCH_SCORER_", extra="ignore")

    checkpoint: Path | None = Field(None, description="checkpoint to serve (default: all-MiniLM-L6-v2 fused "
                                                      "model with an untrained head, built once)")
    data_dir: Path = data_dir_field("MABSA data: posts, rationales, descriptions to score")
    batch_size: int = Field(32, ge=1, description="posts per batch")
    batches: int = Field(8, ge=1, description="batches measured per path")
    warmup: int = Field(2, ge=0, description="batches run before measuring, per path")
    round_batches: int = Field(2, ge=1, description="batches per path per round (paths take turns)")
    concurrency: int = Field(2, ge=1, description="batches in flight to Triton")
    threads: int = Field(2, ge=1, description="torch threads, in-process and per Triton instance")
    instances: str = Field("1", description="Triton model instances (as `lrsa serve --instances`), comma "
                           "separated: with several (e.g. 1,2) one server per count runs, measured in turns "
                           "on the same batches, and each count's ratio to the first is printed")
    clients: str = Field("aio,sync", description="tritonclient flavours to measure, comma separated")
    device: str = Field("cpu", description="device of the in-process model (cuda for a GPU)")
    dtype: str = Field("float32", description="dtype of the in-process model: float32 | bfloat16")


def real_checkpoint(cache: Path = BENCH_CACHE) -> Path:
    """The default model's pretrained all-MiniLM-L6-v2 encoders with randomly initialised fusion
    and head: throughput does not depend on their training."""
    from transformers import AutoTokenizer

    from lrsa.model import FusedSLM, FusedSLMConfig, save_checkpoint

    config = FusedSLMConfig()
    path = cache / f"minilm-untrained-head-inner{config.inner_fusion_layers}"  # one per architecture
    if not (path / "config.json").exists():
        log.info("building a real-weights checkpoint at %s", path)
        save_checkpoint(path, FusedSLM(config, pretrained=True), AutoTokenizer.from_pretrained(config.text_encoder))
    return path


def load_posts(data_dir: Path, n: int) -> tuple[list[str], list[str | None], list[str | None]]:
    """Up to n tweets of twitter2015 dev with their LLM rationale and image description; the
    texts repeat when n exceeds the split."""
    tweets = json.loads((data_dir / "twitter2015" / "dev.json").read_text())
    by_image: dict[str, dict] = {}
    for r in json.loads((data_dir / "rationales" / "twitter2015" / "dev.json").read_text()):
        by_image.setdefault(r["ImageID"] + ".jpg", r)
    texts, rationales, descriptions = [], [], []
    for i in range(n):
        t = tweets[i % len(tweets)]
        r = by_image.get(t["image_id"], {})
        texts.append(" ".join(t["words"]))
        rationales.append(r.get("reason"))
        descriptions.append(r.get("description"))
    return texts, rationales, descriptions


class InProcess:
    """The model called directly: encode -> forward -> decode, one batch after the other."""

    def __init__(self, checkpoint: Path, s: BenchScorerSettings):
        import torch

        from lrsa.model import load_checkpoint

        torch.set_num_threads(s.threads)
        self.s = s
        self.model, self.tokenizer = load_checkpoint(checkpoint, s.device)
        self.model.to(dtype=getattr(torch, s.dtype))
        self.spent = {"encode": 0.0, "forward": 0.0, "decode": 0.0}

    def run(self, batches: list[tuple]) -> None:
        import torch

        from lrsa.predict import decode_batch, encode_batch

        for batch in batches:
            t0 = time.perf_counter()
            tensors, meta = encode_batch(self.tokenizer, self.model.config, *batch)
            t1 = time.perf_counter()
            with torch.inference_mode():
                logits = self.model(**{k: v.to(self.s.device) for k, v in tensors.items()})
                if self.s.device.startswith("cuda"):
                    torch.cuda.synchronize()
            t2 = time.perf_counter()
            decode_batch(logits.float(), meta, batch[0])
            for key, spent in (("encode", t1 - t0), ("forward", t2 - t1), ("decode", time.perf_counter() - t2)):
                self.spent[key] += spent

    def close(self) -> None:
        pass


class ThroughTriton:
    """ScoreProcessor with `concurrency` batches in flight (as that many pipeline actors would)."""

    def __init__(self, grpc_url: str, checkpoint: Path, s: BenchScorerSettings, client: str):
        from workers.stages.score import ScoreProcessor, ScorerSettings

        self.scorer = ScoreProcessor(ScorerSettings(url=grpc_url, checkpoint=checkpoint, client=client,
                                                    request_batch_size=s.batch_size, concurrency=s.concurrency,
                                                    timeout_s=600))
        self.pool = ThreadPoolExecutor(s.concurrency)

    def run(self, batches: list[tuple]) -> None:
        list(self.pool.map(self.scorer.process, [self._items(b) for b in batches]))

    @staticmethod
    def _items(batch: tuple) -> list:
        from lrsa.schemas import Post, SourceRef
        from workers.stages.api import WorkItem

        return [WorkItem(post=Post(id=str(i), text=t), source=SourceRef(topic="bench", partition=0, offset=i),
                         rationale=r, image_description=d) for i, (t, r, d) in enumerate(zip(*batch))]

    def close(self) -> None:
        self.pool.shutdown()
        self.scorer.close()


def mean_executed_batch(grpc_url: str) -> float:
    """Posts per forward pass in Triton (its statistics): > batch_size when the dynamic batcher
    merged concurrent requests."""
    import tritonclient.grpc as grpcclient

    from serving.triton_server import PYTHON_MODEL

    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        stats = client.get_inference_statistics(PYTHON_MODEL, as_json=True)["model_stats"][0]
    finally:
        client.close()
    return int(stats.get("inference_count", 0)) / max(1, int(stats.get("execution_count", 0)))


def run_bench(s: BenchScorerSettings) -> dict[str, Any]:
    """Paths take turns on the same batches, round after round, so that load from other
    processes on a shared machine falls on all of them alike."""
    from serving.triton_server import TritonServer, render_repository

    checkpoint = s.checkpoint or real_checkpoint()
    texts, rationales, descriptions = load_posts(s.data_dir, s.batches * s.batch_size)
    bs = s.batch_size
    batches = [(texts[i:i + bs], rationales[i:i + bs], descriptions[i:i + bs]) for i in range(0, len(texts), bs)]
    rounds = [batches[i:i + s.round_batches] for i in range(0, len(batches), s.round_batches)]
    clients = [c.strip() for c in s.clients.split(",") if c.strip()]
    counts = [int(n) for n in s.instances.split(",") if n.strip()]

    def key(client: str, n: int) -> str:
        return f"triton_{client}" if len(counts) == 1 else f"triton_{client}_x{n}"

    elapsed: dict[str, float] = {"in_process": 0.0, **{key(c, n): 0.0 for n in counts for c in clients}}
    merged: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="lrsa-bench-scorer-") as tmp, ExitStack() as servers:
        urls = {}
        for n in counts:
            repo = render_repository(Path(tmp) / f"repo-x{n}", checkpoint, threads=s.threads, instance_count=n)
            (Path(tmp) / f"server-x{n}").mkdir()
            server = servers.enter_context(TritonServer(repo, http_port=0, grpc_port=0, metrics_port=0,
                                                        workdir=Path(tmp) / f"server-x{n}"))
            urls[n] = server.grpc_url
        paths = {"in_process": InProcess(checkpoint, s),
                 **{key(c, n): ThroughTriton(urls[n], checkpoint, s, c) for n in counts for c in clients}}
        try:
            for path in paths.values():
                path.run(batches[: s.warmup])
            paths["in_process"].spent = dict.fromkeys(paths["in_process"].spent, 0.0)
            for part in tqdm(rounds, desc="rounds (every path, same batches)", unit="round"):
                for name, path in paths.items():
                    start = time.perf_counter()
                    path.run(part)
                    elapsed[name] += time.perf_counter() - start
            merged = {n: mean_executed_batch(urls[n]) for n in counts}
        finally:
            for path in paths.values():
                path.close()
    posts = len(batches) * bs
    base = posts / elapsed["in_process"]
    spent = paths["in_process"].spent
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "batch_size": bs, "batches": len(batches),
                              "concurrency": s.concurrency, "threads": s.threads, "device": s.device,
                              "dtype": s.dtype,
                              "in_process": {"posts_per_s": base, **{f"{k}_ms_per_batch": v * 1000 / len(batches)
                                                                     for k, v in spent.items()}}}
    result["triton_mean_executed_batch"] = merged[counts[0]]
    result["instances"] = counts
    for n in counts:
        for c in clients:
            rate = posts / elapsed[key(c, n)]
            result[key(c, n)] = {"posts_per_s": rate, "ratio_vs_in_process": rate / base, "instances": n,
                                 "mean_executed_batch": merged[n]}
            if n != counts[0]:
                result[key(c, n)][f"ratio_vs_x{counts[0]}"] = rate / (posts / elapsed[key(c, counts[0])])
    return result


def format_result(r: dict[str, Any]) -> str:
    ip = r["in_process"]
    lines = [f"fused SLM, {r['batches']} batches of {r['batch_size']} posts, {r['threads']} torch threads, "
             f"in-process on {r['device']} in {r['dtype']}",
             f"  in-process         {ip['posts_per_s']:8.1f} posts/s   (per batch: encode {ip['encode_ms_per_batch']:.1f} ms, "
             f"forward {ip['forward_ms_per_batch']:.1f} ms, decode {ip['decode_ms_per_batch']:.1f} ms)"]
    for key in (k for k in r if k.startswith("triton_") and isinstance(r[k], dict)):
        extra = "".join(f", {k.removeprefix('ratio_vs_')} instance(s): {v:.2f}x" for k, v in r[key].items()
                        if k.startswith("ratio_vs_x"))
        lines.append(f"  {key:<18} {r[key]['posts_per_s']:8.1f} posts/s   ratio vs in-process "
                     f"{r[key]['ratio_vs_in_process']:.2f}x{extra}  ({r['concurrency']} batches in flight, "
                     f"{r[key]['instances']} instance(s))")
    lines.append(f"  Triton ran {r['triton_mean_executed_batch']:.1f} posts per forward pass (dynamic batching)")
    return "\n".join(lines)
