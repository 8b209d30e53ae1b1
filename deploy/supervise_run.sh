#!/usr/bin/env bash
# Keeps `lrsa run` running on the Ray head (ray_cluster.yaml): a driver that exits non-zero (a lost
# node it could not recover from, a fenced transaction) is restarted after a back-off; its
# uncommitted posts are redone. Exit 0 (a clean stop, SIGTERM) ends the loop. Settings come from
# /home/ray/lrsa.env (LRSA_* variables: bootstrap servers, topics, Triton URLs, Kafka credentials
# files), never from this script.
set -u
ENV_FILE=${LRSA_ENV_FILE:-/home/ray/lrsa.env}
[ -f "$ENV_FILE" ] && { set -a; . "$ENV_FILE"; set +a; }
delay=5
while true; do
  lrsa run --ray-address auto "$@"
  code=$?
  [ "$code" -eq 0 ] && exit 0
  echo "$(date -u +%FT%TZ) lrsa run exited with $code; restarting in ${delay}s" >&2
  sleep "$delay"
  delay=$(( delay < 60 ? delay * 2 : 60 ))
done
