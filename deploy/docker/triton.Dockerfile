# Triton with the fused SLM: NVIDIA's image (Python 3.12 in its python backend, which the project
# supports), the project installed for the python backend's model.py, and the model repository
# rendered for the checkpoint at build time (serving/triton_server.py render_repository).
#   docker build -f deploy/docker/triton.Dockerfile --build-arg CHECKPOINT=checkpoints/lrsa-twitter2015 -t lrsa-triton .
FROM nvcr.io/nvidia/tritonserver:25.01-py3

ARG CHECKPOINT=checkpoints/lrsa-twitter2015
WORKDIR /opt/lrsa

COPY pyproject.toml README.md ./
COPY lrsa ./lrsa
COPY serving ./serving
COPY ${CHECKPOINT} /opt/checkpoint

RUN pip install --no-cache-dir --break-system-packages . \
 && python3 -c "from pathlib import Path; from serving.triton_server import render_repository; render_repository(Path('/models'), Path('/opt/checkpoint'))"

EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/sh", "-c", "curl -fsS http://127.0.0.1:8000/v2/health/ready || exit 1"]
CMD ["tritonserver", "--model-repository=/models", "--strict-readiness=true", "--exit-on-error=true"]
