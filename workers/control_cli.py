"""`lrsa status`, `lrsa scale STAGE=MIN[:MAX]`, `lrsa control pause|resume|drain`: clients of a running
worker's control endpoint (workers/driver/control.py); and `lrsa bench scaling`."""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from typing import Any

from lrsa.settings import add_settings_flags, settings_from_args
from workers.driver.control_settings import ControlClientSettings

SCALE = re.compile(r"^(?P<stage>[A-Za-z0-9_.-]+)=(?P<min>\d+)?(?::(?P<max>\d+))?$")


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="a running worker's pools, lag, in-flight work and scaling decisions")
    add_settings_flags(p, ControlClientSettings)
    p.add_argument("--json", action="store_true", help="print the endpoint's JSON as it is")
    p.set_defaults(func=_status)

    p = sub.add_parser("scale", help="set a running worker's pool bounds: STAGE=MIN[:MAX] (or STAGE=:MAX)")
    p.add_argument("bounds", nargs="+", metavar="STAGE=MIN[:MAX]",
                   help="e.g. rationale=2:4; MIN alone keeps MAX (raised to MIN if lower); :MAX alone keeps MIN")
    add_settings_flags(p, ControlClientSettings)
    p.set_defaults(func=_scale)

    p = sub.add_parser("control", help="pause, resume or drain a running worker")
    p.add_argument("action", choices=("pause", "resume", "drain"),
                   help="pause/resume fetching (in-flight work finishes and commits); drain: finish, commit, exit")
    add_settings_flags(p, ControlClientSettings)
    p.set_defaults(func=_control)

    from workers.bench.scaling import ScalingBenchSettings

    p = bench.add_parser("scaling", help="posts/s of a slow stage with 1 and with 2 actors, and their ratio")
    add_settings_flags(p, ScalingBenchSettings)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=_bench)


class ControlError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def call(s: ControlClientSettings, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to the endpoint; its JSON answer, or ControlError with the endpoint's reason."""
    headers = {"Accept": "application/json"}
    token = s.token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif method == "POST":
        data = b""
    req = urllib.request.Request(s.control_url.rstrip("/") + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=s.control_timeout_s, context=s.tls_context()) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error", e.reason)
        except (ValueError, AttributeError):
            reason = e.reason
        raise ControlError(e.code, str(reason)) from None
    except (urllib.error.URLError, OSError) as e:
        raise ControlError(0, f"cannot reach the worker at {s.control_url} (--control-url): "
                              f"{getattr(e, 'reason', e)}") from None


def parse_bounds(text: str) -> tuple[str, int | None, int | None]:
    m = SCALE.match(text.strip())
    if not m or (m["min"] is None and m["max"] is None):
        raise ValueError(f"{text!r} is not STAGE=MIN[:MAX] (e.g. rationale=1:3)")
    lo = int(m["min"]) if m["min"] is not None else None
    hi = int(m["max"]) if m["max"] is not None else None
    return m["stage"], lo, hi


def _status(args: argparse.Namespace) -> int:
    s = settings_from_args(ControlClientSettings, args)
    try:
        status = call(s, "GET", "/status")
    except ControlError as e:
        print(f"lrsa status: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(render(status))
    return 0


def render(status: dict[str, Any]) -> str:
    """The status as an operator reads it."""
    lines = [f"{status.get('phase', '?')}, {'ready' if status.get('ready') else 'not ready'}"
             f" ({status.get('ready_reason', '')}){'; PAUSED' if status.get('paused') else ''}"]
    lines.append(f"input {status.get('input_topic')} group {status.get('group_id')}: lag {status.get('lag_total', 0)}"
                 + (f", trend {status['lag_trend_posts_per_s']:+.1f} posts/s"
                    if status.get("lag_trend_posts_per_s") is not None else ""))
    for part, lag in sorted(status.get("lag", {}).items()):
        lines.append(f"  {part}: {lag}")
    lines.append("pools (actors min..max, in flight, queued, slots in use, batches per actor):")
    for name, p in status.get("pools", {}).items():
        occ = f"{100 * p['occupancy']:.0f}%" if p.get("occupancy") is not None else "-"
        work = f"{p['work_per_actor']:.2f}" if p.get("work_per_actor") is not None else "-"
        extra = "".join([", starting one" if p.get("starting") else "", ", draining one" if p.get("draining") else "",
                         f", unplaced: {p['unplaced']}" if p.get("unplaced") else ""])
        lines.append(f"  {name}: {p['actors']} ({p['min']}..{p['max']}), {p['inflight_batches']}, "
                     f"{p['queued_batches']}, {occ}, {work}{extra}")
    decisions = status.get("decisions", [])
    if decisions:
        import datetime

        lines.append("recent scaling decisions:")
        for d in decisions[-10:]:
            at = datetime.datetime.fromtimestamp(d["at"], datetime.timezone.utc).strftime("%H:%M:%S")
            lines.append(f"  {at} {d['stage']} {d['direction']} {d['size_from']}->{d['size_to']} "
                         f"({d['reason']}: {d['detail']})")
    return "\n".join(lines)


def _scale(args: argparse.Namespace) -> int:
    s = settings_from_args(ControlClientSettings, args)
    try:
        wanted = [parse_bounds(b) for b in args.bounds]
    except ValueError as e:
        print(f"lrsa scale: {e}", file=sys.stderr)
        return 2
    for stage, lo, hi in wanted:
        try:
            out = call(s, "POST", f"/pools/{stage}", {k: v for k, v in (("min", lo), ("max", hi)) if v is not None})
        except ControlError as e:
            print(f"lrsa scale: {stage}: {e}", file=sys.stderr)
            return 1
        print(f"{stage}: bounds {out['previous']['min']}:{out['previous']['max']} -> {out['min']}:{out['max']} "
              f"({out['actors']} actors now; the pool moves inside its bounds one actor per tick)")
    return 0


def _control(args: argparse.Namespace) -> int:
    s = settings_from_args(ControlClientSettings, args)
    try:
        print(json.dumps(call(s, "POST", f"/{args.action}")))
    except ControlError as e:
        print(f"lrsa control {args.action}: {e}", file=sys.stderr)
        return 1
    return 0


def _bench(args: argparse.Namespace) -> int:
    from workers.bench.scaling import ScalingBenchSettings, run_bench

    return run_bench(settings_from_args(ScalingBenchSettings, args), as_json=args.json)
