#!/usr/bin/env bash
# Set up, then run the whole test suite. Tests start what they need themselves: the Apache Kafka
# broker (KRaft, loopback), a real tritonserver and a local Ray.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
