"""The ablation grid: variants x seeds x datasets, each a full training run on the dev split.

Runs already finished (their metrics.json exists) are reused, so the grid can be filled in
over several sessions; the table reports mean ± std over the seeds present, and n. `--rescore`
evaluates finished runs' checkpoints again with the current decoding (dev_eval.json beside
metrics.json), and the table prefers those scores.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from training.atomic import replaced_whole
from training.evaluate import DECODING
from training.settings import AblationSettings, EvalSettings, TrainSettings
from training.variants import ALL_VARIANTS, VARIANTS

log = logging.getLogger(__name__)



def run_dir(root: Path, dataset: str, variant: str, seed: int) -> Path:
    return root / dataset / variant / f"seed{seed}"


def run_ablations(s: AblationSettings) -> list[dict]:
    from training.train import train

    variants = list(VARIANTS) if s.variants == "all" else s.variants.split(",")  # checked by the settings
    seeds = [int(x) for x in s.seeds.split(",")]
    for dataset in [] if s.report_only else s.datasets.split(","):
        for variant in variants:
            for seed in seeds:
                out = run_dir(s.out, dataset, variant, seed)
                if (out / "metrics.json").exists():  # finished earlier
                    continue
                log.info("ablation run: %s / %s / seed %d -> %s", dataset, variant, seed, out)
                train(TrainSettings(data_dir=s.data_dir, dataset=dataset, out=out, seed=seed, epochs=s.epochs,
                                    threads=s.threads, limit=s.limit,
                                    **ALL_VARIANTS[variant][1]))
    if s.rescore:
        rescore(s)
    rows = collect(s.out)
    table = markdown_table(rows)
    print(table)
    if s.table:
        s.table.write_text(table + "\n")
    return rows


def rescore(s: AblationSettings) -> None:
    """Evaluate each finished run's checkpoint on dev with the current decoding, on the data and
    streams it was trained with; writes dev_eval.json beside its metrics.json. Runs trained (or
    rescored) with the current decoding already have its scores."""
    from training.evaluate import run_eval

    for metrics in sorted(s.out.glob("*/*/seed*/metrics.json")):
        run, result = metrics.parent, json.loads(metrics.read_text())
        done = run / "dev_eval.json"
        if not (run / "model.safetensors").exists() or DECODING in (result.get("decoding"), _decoding_of(done)):
            continue
        trained = result["settings"]
        fields = ("dataset", "rationale_source", "no_rationale", "no_description", "rationale_file", "limit")
        settings = EvalSettings(data_dir=s.data_dir, checkpoint=run, split="dev", threads=s.threads,
                                **{k: trained[k] for k in fields})
        log.info("rescoring %s", run)
        with replaced_whole(done) as tmp:
            tmp.write_text(json.dumps(run_eval(settings), indent=2) + "\n")


def _decoding_of(eval_json: Path) -> str | None:
    return json.loads(eval_json.read_text()).get("decoding") if eval_json.exists() else None


def _load_run(metrics: Path) -> dict:
    """A finished run's metrics; its dev scores from dev_eval.json where rescored."""
    run = json.loads(metrics.read_text())
    run.setdefault("decoding", "argmax")
    rescored = metrics.parent / "dev_eval.json"
    if rescored.exists():
        scores = json.loads(rescored.read_text())
        run["dev"] = {task: scores[task] for task in ("jmasa", "mate", "masc")}
        run["decoding"] = scores.get("decoding", "argmax")
    return run


def collect(root: Path) -> list[dict]:
    """One row per (dataset, variant) with the dev scores of every finished seed."""
    rows = []
    for variant in ALL_VARIANTS:
        for dataset_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
            runs = [_load_run(m) for m in sorted((dataset_dir / variant).glob("seed*/metrics.json"))]
            if runs:
                rows.append({"dataset": dataset_dir.name, "variant": variant, "runs": runs})
    return rows


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| dataset | variant | n seeds | JMASA F1 | MATE F1 | MASC acc | best epoch | train+eval min | decoding |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["dataset"], list(ALL_VARIANTS).index(r["variant"]))):
        runs = row["runs"]
        get = lambda task, key: [r["dev"][task][key] for r in runs]  # noqa: E731
        minutes = statistics.mean(r["train_seconds_total"] for r in runs) / 60
        lines.append(f"| {row['dataset']} | {ALL_VARIANTS[row['variant']][0]} | {len(runs)} | {_mean_std(get('jmasa', 'f1'))} | "
                     f"{_mean_std(get('mate', 'f1'))} | {_mean_std(get('masc', 'accuracy'))} | "
                     f"{'/'.join(str(r['best_epoch']) for r in runs)} | {minutes:.0f} | "
                     f"{'/'.join(sorted({r['decoding'] for r in runs}))} |")
    return "\n".join(lines)
