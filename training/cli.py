"""`lrsa train`, `lrsa eval` and `lrsa ablations`: flags mirror the settings classes."""

from __future__ import annotations

import argparse
import json
import typing

from pydantic_settings import BaseSettings

from lrsa.settings import field_help, settings_from_args


def _add_flags(p: argparse.ArgumentParser, cls: type[BaseSettings]) -> None:
    """One flag per settings field (default None, so env vars and defaults still apply)."""
    for name, f in cls.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if f.annotation is bool:
            p.add_argument(flag, action="store_true", default=None, help=field_help(cls, name))
            continue
        kind = _flag_type(f.annotation)
        choices = typing.get_args(f.annotation) if typing.get_origin(f.annotation) is typing.Literal else None
        p.add_argument(flag, type=kind, choices=choices, default=None, help=field_help(cls, name))


def _flag_type(annotation: object) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return type(args[0])
    if args:  # Optional[X] / X | None
        return _flag_type(args[0]) if typing.get_args(args[0]) else args[0]
    return annotation if isinstance(annotation, type) else str


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    from training.settings import AblationSettings, EvalSettings, TrainSettings

    p = sub.add_parser("train", help="train the fused SLM on a MABSA benchmark")
    _add_flags(p, TrainSettings)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: JMASA, MATE, MASC")
    _add_flags(p, EvalSettings)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_eval)

    p = sub.add_parser("ablations", help="run the ablation grid (variants x seeds x datasets)")
    _add_flags(p, AblationSettings)
    p.set_defaults(func=_ablations)


def _train(args: argparse.Namespace) -> int:
    from training.train import TrainSettings, train

    result = train(settings_from_args(TrainSettings, args))
    print(json.dumps({k: result[k] for k in ("dataset", "best_epoch", "dev", "stop_reason",
                                             "train_seconds_total")}, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from training.evaluate import EvalSettings, run_eval

    result = run_eval(settings_from_args(EvalSettings, args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['dataset']} {result['split']} ({result['posts']} posts): "
              f"JMASA F1 {result['jmasa']['f1']:.2f}  MATE F1 {result['mate']['f1']:.2f}  "
              f"MASC acc {result['masc']['accuracy']:.2f} / macro-F1 {result['masc']['macro_f1']:.2f}")
    return 0


def _ablations(args: argparse.Namespace) -> int:
    from training.ablations import AblationSettings, run_ablations

    run_ablations(settings_from_args(AblationSettings, args))
    return 0
