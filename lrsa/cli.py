"""Core subcommands: `lrsa schemas` (export the JSON Schema contracts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schemas", help="write the message contracts as JSON Schema files")
    p.add_argument("--out", type=Path, default=Path("schemas"), help="output folder (default: schemas)")
    p.set_defaults(func=_schemas)


def _schemas(args: argparse.Namespace) -> int:
    from lrsa.schemas import ALL_SCHEMAS, SCHEMA_VERSIONS

    args.out.mkdir(parents=True, exist_ok=True)
    for name, model in ALL_SCHEMAS.items():
        path = args.out / f"{name}.v{SCHEMA_VERSIONS[name]}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
        print(path)
    return 0
