"""Core subcommands: `lrsa schemas` (export the JSON Schema contracts), `lrsa pack-model` (a
trained checkpoint packed for the repository, lrsa/model_pack.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schemas", help="write the message contracts as JSON Schema files")
    p.add_argument("--out", type=Path, default=Path("schemas"), help="output folder (default: schemas)")
    p.set_defaults(func=_schemas)
    p = sub.add_parser("pack-model", help="pack a trained checkpoint for the repository (int8 differences from "
                       "the pretrained encoder, SHA-256 manifest; lrsa/model_pack.py)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a `lrsa train` out folder")
    p.add_argument("--out", type=Path, default=None, help="packed model folder (default: models/lrsa-default)")
    p.set_defaults(func=_pack_model)


def contract_schemas() -> dict[str, dict]:
    """File name -> JSON Schema of every topic contract: posts, results and dead letters
    (lrsa.schemas), brand aggregates (lrsa.aggregates) and alerts (lrsa.shift)."""
    from lrsa.aggregates import AGGREGATE_SCHEMA_VERSION, AggregateRecord
    from lrsa.schemas import ALL_SCHEMAS, SCHEMA_VERSIONS
    from lrsa.shift import ALERT_SCHEMA_VERSION, AlertEvent

    out = {f"{name}.v{SCHEMA_VERSIONS[name]}.schema.json": model.model_json_schema()
           for name, model in ALL_SCHEMAS.items()}
    out[f"aggregate.v{AGGREGATE_SCHEMA_VERSION}.schema.json"] = AggregateRecord.model_json_schema()
    out[f"alert.v{ALERT_SCHEMA_VERSION}.schema.json"] = AlertEvent.model_json_schema()
    return out


def _schemas(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    for name, schema in contract_schemas().items():
        path = args.out / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(path)
    return 0


def _pack_model(args: argparse.Namespace) -> int:
    from lrsa.model_pack import DEFAULT_MODEL, PACKED_WEIGHTS, pack, resolve_checkpoint

    out = args.out or DEFAULT_MODEL
    manifest = pack(resolve_checkpoint(args.checkpoint), out)
    size = (out / PACKED_WEIGHTS).stat().st_size
    print(f"packed {args.checkpoint} -> {out} ({size / 1e6:.1f} MB); {PACKED_WEIGHTS} SHA-256 "
          f"{manifest['files'][PACKED_WEIGHTS]}")
    return 0
