"""The layout rule (README, "How a post travels"): the core `lrsa/` imports no Ray, Kafka, Triton
or web server; workers/, serving/, training/ and dashboard/ depend on the core and never on each
other (nor on the `lrsa_cli` composition root). Checked on every import statement, lazy ones too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from repo_paths import REPO

ROOT = REPO
ROOMS = ("workers", "serving", "training", "dashboard")
BANNED = {
    "lrsa": {"ray", "kafka", "tritonclient", "quixstreams", "aiohttp", *ROOMS, "lrsa_cli"},
    **{room: {*ROOMS, "lrsa_cli"} - {room} for room in ROOMS},
}
BANNED["dashboard"] |= {"ray", "tritonclient"}


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("room", sorted(BANNED))
def test_room_imports_only_what_the_layout_allows(room: str) -> None:
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}"
           for path in sorted((ROOT / room).rglob("*.py"))
           for line, name in imports(path) if name.split(".")[0] in BANNED[room]]
    assert not bad, "layout rule broken:\n" + "\n".join(bad)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from workers.config import WorkerSettings\n    import ray.util\n")
    assert [n for _, n in imports(f)] == ["workers.config", "ray.util"]


# The rooms inside workers/ (workers/__init__.py): what each may import of workers/. The modules
# beside the rooms (config, metrics, the command modules) are not rooms; only the command modules
# (cli, aggregate_cli, control_cli) may import any room, and no room imports them.
WORKER_ROOMS = {
    "stages": set(),
    "kafka_clients": {"config"},
    "ingest": {"stages", "kafka_clients", "config", "metrics"},
    "driver": {"ingest", "stages", "kafka_clients", "config", "metrics"},
    "aggregate": {"kafka_clients", "config"},
    "devstack": {"kafka_clients", "config"},
    "bench": {"ingest", "stages", "driver", "kafka_clients", "aggregate", "devstack", "config", "metrics"},
}


def worker_part(name: str) -> str | None:
    """'workers.ingest.actor' -> 'ingest'; 'workers.config' -> 'config'; not workers/ -> None."""
    parts = name.split(".")
    return parts[1] if parts[0] == "workers" and len(parts) > 1 else None


@pytest.mark.parametrize("room", sorted(WORKER_ROOMS))
def test_worker_room_imports_only_its_rule(room: str) -> None:
    allowed = WORKER_ROOMS[room] | {room}
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}"
           for path in sorted((ROOT / "workers" / room).rglob("*.py"))
           for line, name in imports(path)
           if name == "workers" or (worker_part(name) is not None and worker_part(name) not in allowed)]
    assert not bad, f"workers/{room} breaks its rule (may import {sorted(allowed)}):\n" + "\n".join(bad)


def test_every_workers_module_sits_in_a_room_or_beside_them() -> None:
    beside = {"__init__", "config", "metrics", "cli", "aggregate_cli", "control_cli"}
    loose = sorted(p.stem for p in (ROOT / "workers").glob("*.py"))
    assert set(loose) <= beside, f"modules outside the rooms: {sorted(set(loose) - beside)}"
    rooms = {p.name for p in (ROOT / "workers").iterdir() if (p / "__init__.py").exists()}
    assert rooms == set(WORKER_ROOMS), "every room of workers/ has a rule here"


# Modules inside a room held to a narrower rule than the room's: workers/ingest/batch_scheduler.py is the
# ingest actor's Kafka- and Ray-free scheduler (tested with plain fakes), and it imports only
# modules that are Kafka- and Ray-free themselves.
NARROW = {"workers/ingest/batch_scheduler.py": {"ray", "kafka"}}


@pytest.mark.parametrize("module", sorted(NARROW))
def test_narrow_modules_import_only_what_their_rule_allows(module: str) -> None:
    def closure(path: Path, seen: set[Path]) -> list[str]:
        out = []
        for line, name in imports(path):
            if name.split(".")[0] in NARROW[module]:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
            dep = ROOT / (name.replace(".", "/") + ".py")
            if name.split(".")[0] in {"workers", "lrsa"} and dep.exists() and dep not in seen:
                seen.add(dep)
                out += closure(dep, seen)
        return out

    bad = closure(ROOT / module, {ROOT / module})
    assert not bad, f"{module} reaches a banned import:\n" + "\n".join(bad)
