"""The driver side of tests/stages/test_stage_settings.py's clean-node test, run in its own Python process.

A pytest process that has already started and shut down several local Rays (earlier tests) once
saw Ray cancel an actor it had just created on a freshly joined node ("all references to the
actor were removed", twice in a row in CI); a fresh driver process does not carry that state.
Usage: python clean_node_driver.py RAY_ADDRESS; prints one JSON line: what the actor saw and the
ids of the nodes that have the custom resource. Settings come from this process's environment.
"""

from __future__ import annotations

import json
import sys


def main(address: str) -> None:
    import ray

    from lrsa.schemas import Post, SourceRef
    from workers.config import WorkerSettings
    from workers.driver.pipeline import Pools
    from workers.stages.api import WorkItem

    w = WorkerSettings(score_enabled=True, score_processor="settings_probe:SettingsProbe",
                       scorer_url="triton-a:8001", score_resources="scorer_nodes=1",
                       ray_address=address, stage_metrics=False, score_num_cpus=0.5, actor_start_timeout_s=90)
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        pools = Pools(w)
        pools.log_metrics_ports()
        item = WorkItem(Post(id="1", text="the camera is great"), SourceRef(topic="in", partition=0, offset=0))
        status, out = ray.get(pools.actors["score"][0].process.remote([item]), timeout=60)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "scorer_nodes" in n["Resources"]]
        print(json.dumps({"status": status, "seen": json.loads(out[0].rationale) if status == "ok" else str(out),
                          "scorer_nodes": nodes}))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
