"""Settings of the training commands (flags and LRSA_<FIELD> env vars). Light to import: the
CLI builds its flags from these classes without loading torch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pydantic_settings import SettingsConfigDict

from lrsa.offline_models import DEFAULT_MODEL
from lrsa.rationale.config import RationaleSettings
from lrsa.settings import LrsaSettings, data_dir_field
from training.data import DATASETS, Example, RationaleSource, load_split
from training.tsa import DEFAULT_TSA_DIR, load_tsa
from training.variants import ALL_VARIANTS

log = logging.getLogger(__name__)


class DataSettings(LrsaSettings):
    """Which data and which rationale streams: shared by train and eval."""

    data_dir: Path = data_dir_field()
    dataset: str = Field("twitter2015", description="benchmark: twitter2015 or twitter2017; for training "
                         "also both, comma-separated (one model on both train splits, early stopping on "
                         "the mean of their dev scores)")
    rationale_source: RationaleSource = Field(
        "reasons", description="text rationale: the dataset's per-aspect reasons joined, the same "
        "with gold aspect terms masked (reasons_masked), or none")
    no_rationale: bool = Field(False, description="give the model no text rationale")
    no_description: bool = Field(False, description="give the model no image description")
    rationale_file: Path | None = Field(None, description="JSONL of post-level rationales from the "
                                        "rationale batch job (joined by image_id); overrides the reasons")
    limit: int | None = Field(None, description="use only the first N posts of each split (smoke tests)")
    threads: int = Field(2, description="torch CPU threads")
    tsa_dir: Path | None = Field(DEFAULT_TSA_DIR, validation_alias="LRSA_TSA_DIR", description=(
        "folder with the targeted-sentiment tweets (Dong et al. 2014, train.raw; dev split cut off it, "
        "see training/tsa.py); none or absent: not used"))

    @field_validator("dataset")
    @classmethod
    def _known_datasets(cls, spec: str) -> str:
        names = spec.split(",")
        if unknown := [n for n in names if n not in DATASETS]:
            raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(DATASETS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"dataset named twice in {spec!r}")
        return spec

    @property
    def datasets(self) -> list[str]:
        return self.dataset.split(",")

    def load_each(self, split: str) -> dict[str, list[Example]]:
        """The split of every dataset named, each on its own."""
        source = "none" if self.no_rationale else self.rationale_source
        return {name: load_split(self.data_dir, name, split, source, not self.no_description,
                                 None if self.no_rationale else self.rationale_file, self.limit)
                for name in self.datasets}

    def load(self, split: str) -> list[Example]:
        """The split of every dataset named, one after the other."""
        return [ex for examples in self.load_each(split).values() for ex in examples]

    def load_tsa(self, split: str) -> list[Example]:
        """The targeted-sentiment split, or [] (logged) when its file is absent."""
        if self.tsa_dir is None:
            return []
        if not (self.tsa_dir / "train.raw").exists():
            log.warning("no targeted-sentiment data at %s: skipped", self.tsa_dir)
            return []
        return load_tsa(split, self.tsa_dir, self.limit)


class EvalSettings(DataSettings):
    """`lrsa eval` (env LRSA_EVAL_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_EVAL_")

    checkpoint: Path = Field(DEFAULT_MODEL, description="checkpoint folder")
    split: str = Field("dev", description="dev, test (needs test.json) or train")
    batch_size: int = Field(64, description="posts per forward pass")

    @field_validator("dataset")
    @classmethod
    def _one_dataset(cls, spec: str) -> str:
        if "," in spec:
            raise ValueError("eval scores one dataset at a time: run it once per dataset")
        return spec


class CalibrateSettings(DataSettings):
    """`lrsa calibrate` (env LRSA_CALIBRATE_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_CALIBRATE_")

    checkpoint: Path = Field(DEFAULT_MODEL, description="checkpoint folder")
    split: str = Field("dev", description="split to fit on: dev (or train)")
    batch_size: int = Field(64, description="posts per forward pass")
    write: bool = Field(True, description="store the fitted calibration in the checkpoint's config.json")


class TrainSettings(DataSettings):
    """`lrsa train` (env LRSA_TRAIN_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_TRAIN_")

    out: Path = Field(Path("runs/lrsa"), description="output folder (checkpoint + training state)")
    text_encoder: str | None = Field(None, description="HF id or path of the text encoder, or a "
                                     "named offline model (`lrsa models list`; default: offline all-MiniLM-L6-v2)")
    fusion: Literal["dual_cross_attention", "concat", "text_only"] = Field(
        "dual_cross_attention", description="how rationale and description join the text")
    rationale_encoder: Literal["shared", "separate", "frozen"] = Field(
        "frozen", description="encoder of the rationale/description streams")
    inner_fusion_layers: int = Field(3, ge=0, description="dual only: also fuse the rationale and image "
                                     "streams before each of the text encoder's last N layers "
                                     "(0: after the encoder only)")
    sentiment_head: Literal["joint", "factorized", "attention"] = Field(
        "joint", description="tag head: one layer over the 7 tags (joint); role and sentiment "
        "scored apart and multiplied (factorized); the same with a self-attention over the post "
        "before the sentiment layer (attention)")
    epochs: int = Field(10, description="maximum epochs (the learning rate decays to 0 over them)")
    lr: float = Field(1e-4, description="peak learning rate of the pretrained encoder")
    layer_lr_decay: float = Field(1.0, gt=0.0, le=1.0, description="each text-encoder layer below the "
                                  "top trains at this factor of the one above (1: one rate for all)")
    new_layer_lr_scale: float = Field(5.0, description="learning-rate multiplier of the freshly "
                                      "initialised layers (fusion, head)")
    batch_size: int = Field(16, description="posts per step")
    eval_batch_size: int = Field(64, description="posts per forward pass in evaluation")
    seed: int = Field(13, description="seed of torch, numpy and random")
    warmup_ratio: float = Field(0.1, description="share of steps with linear warmup")
    weight_decay: float = Field(0.01, description="AdamW weight decay")
    patience: int = Field(3, description="stop after this many epochs without a better selection score")
    select_on: Literal["jmasa", "jmasa_tsa"] = Field(
        "jmasa", description="checkpoint selection and early stopping on dev: JMASA F1 (jmasa), or the "
        "mean of JMASA F1 and the targeted-sentiment dev macro-F1 (jmasa_tsa; JMASA alone when there "
        "is no targeted-sentiment data)")
    max_text_len: int = Field(128, description="sub-word tokens of the post")
    max_rationale_len: int = Field(128, description="sub-word tokens of the text rationale")
    max_description_len: int = Field(128, description="sub-word tokens of the image description")
    modality_dropout: float = Field(0.3, description="chance to hide each stream per post in training")
    dropout: float = Field(0.1, description="dropout of fusion and head")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing of the tag loss")
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0, description="evaluate and save an exponential "
                                    "moving average of the weights with this decay per step "
                                    "(0.995 measured on Twitter-2017)")
    tsa_ratio: float = Field(0.0, ge=0.0, description="targeted-sentiment tweets drawn afresh each epoch, "
                             "as a multiple of the MABSA training posts (0: none; at most all of them)")
    tsa_loss_weight: float = Field(1.0, ge=0.0, description="weight of a targeted-sentiment word in the "
                                   "tag loss against a MABSA word's 1")
    brand_posts: int = Field(0, ge=0, description="brand-like posts written for the project "
                             "(training/brand_posts.py: complaints, sarcasm, praise, comparisons, questions, "
                             "news; every aspect labelled) added to the training set (0: none)")
    dev_text_only: bool = Field(False, description="evaluate dev (checkpoint selection, early stopping, "
                                "calibration) without the rationale and description streams, as a worker "
                                "without the rationale stage serves")
    rdrop_alpha: float = Field(0.0, ge=0.0, description="R-Drop: weight of the symmetric KL between two "
                               "dropout draws of each batch (0: off; each step then costs about twice)")
    calibrate: bool = Field(True, description="after training, fit the confidence calibration of the best "
                            "checkpoint on dev and store it with the checkpoint (training/calibrate.py)")
    cache_dir: Path | None = Field(Path("runs/cache"), description="where frozen-encoder rationale "
                                   "states are kept for reuse across runs")
    fresh: bool = Field(False, description="ignore OUT/train_state and start over (default: resume)")
    teacher: Path | None = Field(None, description="distil this checkpoint (e.g. the accurate tier) into the "
                                 "model: its soft tag labels on every training example, computed once before "
                                 "training (training/teacher.py), join the gold tags in the loss")
    teacher_weight: float = Field(0.5, ge=0.0, le=1.0, description="share of the teacher's term in the loss "
                                  "(the gold tags get the rest)")
    teacher_text_only: bool = Field(True, description="the teacher reads the post text only (one encoder pass a "
                                    "post, as the text-only worker serves); off: also the rationale and description")
    teacher_temperature: float = Field(2.0, gt=0.0, description="softening temperature of the teacher's and "
                                       "the student's tag distributions in the distillation term")
    init_from: Path | None = Field(None, description="start from this checkpoint's weights and architecture "
                                   "(fine-tuning, e.g. on other rationales) instead of the pretrained encoder "
                                   "with fresh fusion layers; the optimiser and schedule start afresh")


    @model_validator(mode="after")
    def _teacher_alone(self) -> "TrainSettings":
        if self.teacher is not None and self.rdrop_alpha:
            raise ValueError("--teacher and --rdrop-alpha together are not supported: use one")
        return self


class AblationSettings(LrsaSettings):
    """`lrsa ablations` (env LRSA_ABLATIONS_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_ABLATIONS_")

    data_dir: Path = data_dir_field()
    datasets: str = Field("twitter2015,twitter2017", description="comma-separated benchmarks")
    variants: str = Field("all", description="comma-separated variant names, or all")
    seeds: str = Field("13,21,42", description="comma-separated seeds")
    out: Path = Field(Path("runs/ablations"), description="one run folder per dataset/variant/seed")
    epochs: int = Field(10, description="maximum epochs per run")
    threads: int = Field(2, description="torch CPU threads")
    limit: int | None = Field(None, description="use only the first N posts of each split (smoke tests)")
    table: Path | None = Field(None, description="also write the markdown table to this file")
    report_only: bool = Field(False, description="train nothing: only tabulate the finished runs")
    rescore: bool = Field(False, description="evaluate finished runs' checkpoints on dev again with the "
                          "current decoding (dev_eval.json per run); the table prefers those scores")

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, spec: str) -> str:
        unknown = [n for n in spec.split(",") if n not in ALL_VARIANTS] if spec != "all" else []
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(ALL_VARIANTS)}")
        return spec


class RationalesJobSettings(RationaleSettings):
    """`lrsa rationales`: the serving engine's settings plus the job's (env LRSA_RATIONALES_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_RATIONALES_")

    dataset: str = Field("twitter2015", description="twitter2015 or twitter2017")
    split: str = Field("dev", description="train or dev")
    out: Path | None = Field(None, description="JSONL output (default runs/rationales/<model>/<dataset>/<split>.jsonl)")
    data_dir: Path = data_dir_field()
    chunk_size: int = Field(64, ge=1, description="posts per engine call (and per flushed write)")
    limit: int | None = Field(None, ge=1, description="only the first N posts of the split")

    def out_path(self) -> Path:
        name = Path(self.model).name.split("-")[0] if self.model else "model"
        return self.out or Path("runs") / "rationales" / name / self.dataset / f"{self.split}.jsonl"
