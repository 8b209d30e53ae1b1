"""Targeted-sentiment data (Dong et al. 2014 format), its partial labels, the per-epoch draw
and the loss weighting of the training loop."""

from __future__ import annotations

import json

import pytest
import torch

from lrsa.labels import IGNORE_INDEX, LABEL_TO_ID
from training.data import Example, make_batch
from training.metrics import masc
from training.tsa import DEFAULT_TSA_DIR, TsaFormatError, load_tsa, parse_tsa

RAW = """i love my $T$ , best phone ever
iphone 4
1
$T$ is down again . $T$ please fix it
google mail
-1
watching $T$ tonight
the voice
0
"""


def test_parse_replaces_every_mention_with_the_target_words():
    love, down, watching = parse_tsa(RAW)
    assert love.words == ["i", "love", "my", "iphone", "4", ",", "best", "phone", "ever"]
    assert love.spans == [(3, 5, "POS")]
    # two mentions: two spans of the target's two words, each with the tweet's polarity
    assert down.words[:5] == ["google", "mail", "is", "down", "again"]
    assert down.spans == [(0, 2, "NEG"), (6, 8, "NEG")]
    assert down.words[6:8] == ["google", "mail"]
    assert watching.spans == [(1, 3, "NEU")]
    assert all(ex.partial and ex.rationale is None and ex.description is None for ex in (love, down, watching))
    assert love.terms == ["iphone 4"]


def test_glued_target_keeps_the_rest_of_the_token():
    (ex,) = parse_tsa("$T$'s new update\nxbox\n0\n")
    assert ex.words == ["xbox", "'s", "new", "update"]
    assert ex.spans == [(0, 1, "NEU")]


@pytest.mark.parametrize("text, message", [
    ("a $T$\nb\n", "multiple of 3"),
    ("a $T$\nb\n2\n", "polarity '2'"),
    ("no target here\nb\n1\n", "no $T$"),
    ("a $T$\n   \n1\n", "empty target"),
])
def test_malformed_files_say_what_is_wrong(text, message):
    with pytest.raises(TsaFormatError, match=message.replace("$", r"\$")):
        parse_tsa(text, "x.raw")


def test_partial_examples_label_only_their_target_words(tokenizer, tiny_config):
    full = Example(words=["delta", "lost", "my", "bag"], image_id="a", spans=[(0, 1, "NEG")])
    partial = Example(words=["delta", "lost", "my", "bag"], image_id="b", spans=[(0, 1, "NEG")], partial=True)
    tensors, firsts = make_batch([full, partial], tokenizer, tiny_config)
    labels = tensors["labels"]
    word_labels = [[int(labels[row, t]) for t in firsts[row]] for row in range(2)]
    assert word_labels[0] == [LABEL_TO_ID["B-NEG"]] + [LABEL_TO_ID["O"]] * 3
    assert word_labels[1] == [LABEL_TO_ID["B-NEG"]] + [IGNORE_INDEX] * 3


def test_masc_reports_each_class_recall():
    scores = masc(["NEG", "NEG", "NEU", "POS"], ["NEG", "NEU", "NEU", "NEU"])
    assert scores["accuracy"] == 50.0
    assert scores["recall_neg"] == 50.0 and scores["recall_neu"] == 100.0 and scores["recall_pos"] == 0.0


@pytest.mark.skipif(not (DEFAULT_TSA_DIR / "train.raw").exists(),
                    reason=f"targeted-sentiment data absent at {DEFAULT_TSA_DIR}")
def test_dev_split_is_fixed_and_disjoint_from_train():
    train, dev = load_tsa("train"), load_tsa("dev")
    assert (len(train), len(dev)) == (5623, 625)
    assert not {ex.image_id for ex in train} & {ex.image_id for ex in dev}
    assert [ex.image_id for ex in load_tsa("dev")] == [ex.image_id for ex in dev]
    with pytest.raises(ValueError, match="held out"):
        load_tsa("test")


# ----------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from lrsa.model import tiny_test_checkpoint

    return tiny_test_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tokenizer(tiny_ckpt):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_ckpt))


@pytest.fixture(scope="module")
def tiny_config(tiny_ckpt):
    from lrsa.model import load_config

    return load_config(tiny_ckpt)


@pytest.fixture(scope="module")
def tsa_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tsa")
    (root / "train.raw").write_text(RAW * 20)  # 60 tweets: 54 train, 6 dev
    return root


def _trainer(tmp_path, tiny_ckpt, tsa_dir, **overrides):
    from lrsa.model import load_checkpoint
    from test_training import write_dataset
    from training.settings import TrainSettings
    from training.train import Trainer

    data = write_dataset(tmp_path / "mabsa")
    model, tokenizer = load_checkpoint(tiny_ckpt)
    s = TrainSettings(**{"data_dir": data, "tsa_dir": tsa_dir, "out": tmp_path / "out", "epochs": 1,
                         "batch_size": 8, "lr": 1e-3, "seed": 3, "threads": 1, "cache_dir": None, **overrides})
    return Trainer(s, model, tokenizer)


def test_each_epoch_draws_its_share_of_tweets_afresh(tmp_path, tiny_ckpt, tsa_dir):
    trainer = _trainer(tmp_path, tiny_ckpt, tsa_dir, tsa_ratio=0.5)
    posts = len(trainer.train_set)  # 24 MABSA posts
    assert (len(trainer.tsa_pool), trainer.tsa_per_epoch, len(trainer.tsa_dev)) == (54, 12, 6)
    assert trainer.steps_per_epoch == -(-(posts + 12) // 8)
    first = trainer._epoch_order()
    assert sorted(i for i in first if i < posts) == list(range(posts))  # every post once
    tweets = [i for i in first if i >= posts]
    assert len(tweets) == len(set(tweets)) == 12 and all(trainer.examples[i].partial for i in tweets)
    assert trainer._epoch_order() == first  # seeded by seed + epoch: a resumed run draws the same
    trainer.epoch = 1
    assert {i for i in trainer._epoch_order() if i >= posts} != set(tweets)
    # more than the file has: all of them
    assert _trainer(tmp_path / "all", tiny_ckpt, tsa_dir, tsa_ratio=10).tsa_per_epoch == 54


def test_tweets_are_off_by_default_and_without_data(tmp_path, tiny_ckpt, tsa_dir):
    assert _trainer(tmp_path, tiny_ckpt, tsa_dir).tsa_per_epoch == 0
    trainer = _trainer(tmp_path / "none", tiny_ckpt, tmp_path / "absent", tsa_ratio=1)
    assert trainer.tsa_pool == [] and trainer.tsa_dev == []


def test_loss_weight_scales_the_tweets_words(tmp_path, tiny_ckpt, tsa_dir):
    trainer = _trainer(tmp_path, tiny_ckpt, tsa_dir, tsa_ratio=1)
    model = trainer.model.eval()
    batch = trainer.train_set[:3] + trainer.tsa_pool[:3]
    tensors, _ = make_batch(batch, trainer.tokenizer, model.config)
    labels = tensors.pop("labels")
    with torch.no_grad():
        logits = model(**tensors)
    per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                  ignore_index=IGNORE_INDEX, reduction="none").view(labels.shape)
    tagged = labels != IGNORE_INDEX
    mabsa_sum, mabsa_n = per_token[:3][tagged[:3]].sum(), tagged[:3].sum()
    tsa_sum, tsa_n = per_token[3:][tagged[3:]].sum(), tagged[3:].sum()
    for w in (0.0, 1.0, 3.0):
        weights = torch.tensor([1.0] * 3 + [w] * 3)
        expected = (mabsa_sum + w * tsa_sum) / (mabsa_n + w * tsa_n)
        assert torch.allclose(trainer._tag_loss(logits, labels, weights), expected, atol=1e-6)
    # weight 1 is the plain mean over labelled words
    plain = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    assert torch.allclose(trainer._tag_loss(logits, labels), plain, atol=1e-6)


def test_training_with_tweets_reports_their_dev_scores(tmp_path, tiny_ckpt, tsa_dir):
    result = _trainer(tmp_path, tiny_ckpt, tsa_dir, tsa_ratio=1).fit()
    tsa = result["tsa_dev"]
    assert tsa["posts"] == 6 and set(tsa) >= {"accuracy", "macro_f1", "recall_neg", "recall_neu", "recall_pos"}
    assert result["history"][0]["tsa_dev"] == tsa


def test_selection_score_is_jmasa_or_its_mean_with_the_tweets_macro_f1():
    from training.train import selection_score

    dev, tsa = {"jmasa": {"f1": 60.0}}, {"macro_f1": 70.0}
    assert selection_score("jmasa", dev, tsa) == 60.0
    assert selection_score("jmasa_tsa", dev, tsa) == 65.0
    assert selection_score("jmasa_tsa", dev, None) == 60.0  # no tweets: JMASA alone


def test_best_epoch_follows_the_selection_setting(tmp_path, tiny_ckpt, tsa_dir):
    result = _trainer(tmp_path, tiny_ckpt, tsa_dir, tsa_ratio=1, epochs=3, patience=5,
                      select_on="jmasa_tsa").fit()
    history = result["history"]
    for entry in history:
        assert entry["selection_score"] == (entry["dev"]["jmasa"]["f1"] + entry["tsa_dev"]["macro_f1"]) / 2
    best = max(history, key=lambda e: e["selection_score"])
    assert (result["best_epoch"], result["select_on"]) == (best["epoch"], "jmasa_tsa")
    assert result["dev"] == best["dev"]


def test_training_stores_a_fitted_calibration_with_the_checkpoint(tmp_path, tiny_ckpt, tsa_dir):
    from lrsa.model import load_config

    trainer = _trainer(tmp_path, tiny_ckpt, tsa_dir)
    result = trainer.fit()
    report = result["calibration"]
    assert report["aspects"] > 0 and {"ece_before", "ece_after", "reliability_before"} <= set(report)
    assert load_config(trainer.s.out).confidence_calibration == report["calibration"]


def test_eval_command_reports_targeted_sentiment_and_negative_recall(tmp_path, tiny_ckpt, tsa_dir, capsys):
    from lrsa_cli.main import main
    from test_training import write_dataset

    data = write_dataset(tmp_path / "mabsa")
    argv = ["eval", "--data-dir", str(data), "--tsa-dir", str(tsa_dir), "--checkpoint", str(tiny_ckpt),
            "--threads", "1"]
    assert main(argv + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tsa_dev"]["posts"] == 6 and "recall_neg" in result["masc"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"recall NEG {result['masc']['recall_neg']:.1f}" in text
    assert f"targeted sentiment dev (6 tweets): acc {result['tsa_dev']['accuracy']:.2f}" in text
