"""`lrsa train`, `lrsa eval` and `lrsa ablations`: flags mirror the settings classes."""

from __future__ import annotations

import argparse
import json

from lrsa.settings import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    from training.settings import AblationSettings, CalibrateSettings, EvalSettings, TrainSettings

    p = sub.add_parser("train", help="train the fused SLM on a MABSA benchmark")
    add_settings_flags(p, TrainSettings)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: JMASA, MATE, MASC")
    add_settings_flags(p, EvalSettings)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_eval)

    p = sub.add_parser("calibrate", help="fit a checkpoint's confidence calibration on dev; ECE and "
                       "reliability table before and after")
    add_settings_flags(p, CalibrateSettings)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_calibrate)

    from training.distill import DistillSettings

    p = sub.add_parser("distill-rationales", help="fine-tune the serving rationale LLM (LoRA) to write the "
                       "teacher rationales the fused SLM learnt from; resumable")
    add_settings_flags(p, DistillSettings)
    p.set_defaults(func=_distill)

    p = sub.add_parser("ablations", help="run the ablation grid (variants x seeds x datasets)")
    add_settings_flags(p, AblationSettings)
    p.set_defaults(func=_ablations)


def _train(args: argparse.Namespace) -> int:
    from training.train import TrainSettings, train

    result = train(settings_from_args(TrainSettings, args))
    keys = ("dataset", "best_epoch", "dev", "dev_by_dataset", "stop_reason", "train_seconds_total")
    print(json.dumps({k: result[k] for k in keys if k in result}, indent=2))
    return 0


def _distill(args: argparse.Namespace) -> int:
    from training.distill import DistillSettings, distill

    print(json.dumps(distill(settings_from_args(DistillSettings, args)), indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from training.evaluate import EvalSettings, run_eval

    result = run_eval(settings_from_args(EvalSettings, args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        masc = result["masc"]
        print(f"{result['dataset']} {result['split']} ({result['posts']} posts): "
              f"JMASA F1 {result['jmasa']['f1']:.2f}  MATE F1 {result['mate']['f1']:.2f}  "
              f"MASC acc {masc['accuracy']:.2f} / macro-F1 {masc['macro_f1']:.2f}  "
              f"recall NEG {masc['recall_neg']:.1f} NEU {masc['recall_neu']:.1f} POS {masc['recall_pos']:.1f}")
        if tsa := result.get("tsa_dev"):
            print(f"targeted sentiment dev ({tsa['posts']} tweets): acc {tsa['accuracy']:.2f} / macro-F1 "
                  f"{tsa['macro_f1']:.2f}  recall NEG {tsa['recall_neg']:.1f} NEU {tsa['recall_neu']:.1f} "
                  f"POS {tsa['recall_pos']:.1f}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import torch

    from lrsa.model import load_checkpoint
    from training.calibrate import aspect_outcomes, calibration_report, format_table, store_calibration
    from training.settings import CalibrateSettings

    s = settings_from_args(CalibrateSettings, args)
    torch.set_num_threads(s.threads)
    model, tokenizer = load_checkpoint(s.checkpoint)
    calibration, report = calibration_report(aspect_outcomes(model, tokenizer, s.load(s.split), s.batch_size))
    if s.write:
        store_calibration(s.checkpoint, calibration)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def _ablations(args: argparse.Namespace) -> int:
    from training.ablations import AblationSettings, run_ablations

    run_ablations(settings_from_args(AblationSettings, args))
    return 0
