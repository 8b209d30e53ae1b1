"""Loaders, determinism, resumption and the eval command, on a tiny model and tiny data."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from lrsa.model import load_checkpoint, tiny_test_checkpoint
from training import cli
from training.data import MASK_TERM, load_split
from training.settings import TrainSettings
from training.train import Trainer

TWEETS = [
    (["RT", "@", "Chuck", ":", "Chuck", "Bass", "is", "everything", "#", "MCM"], [(4, 6, "POS"), (8, 10, "NEU")]),
    (["Girona", "promoted", "to", "La", "Liga"], [(0, 1, "POS"), (3, 5, "NEU")]),
    (["Donald", "Trump", "hotels", "have", "plummeted"], [(0, 2, "NEG")]),
    (["great", "day", "with", "Justin", "Bieber", "!"], [(3, 5, "POS")]),
]


def write_dataset(root, splits=("train", "dev", "test"), copies=(6, 2, 2), dataset="twitter2015", posts=TWEETS):
    """A MABSA-format data folder (tweets + per-aspect rationale records) under `root`."""
    for split, n in zip(splits, copies):
        tweets, records = [], []
        for k in range(n):
            for j, (words, spans) in enumerate(posts):
                image = f"{split}{k}_{j}"
                tweets.append({"words": words, "image_id": image + ".jpg", "aspects": [
                    {"from": s, "to": e, "polarity": p, "term": words[s:e]} for s, e, p in spans]})
                for s, e, p in spans:
                    target = " ".join(words[s:e])
                    text = " ".join(words[:s] + ["$T$"] + words[e:])
                    records.append({"text": text, "target": target, "ImageID": image, "gt_label": "0",
                                    "description": f"A photo about {words[0]}.",
                                    "reason": f"Sentiment: {p}. {target} is discussed. More words follow."})
        (root / dataset).mkdir(parents=True, exist_ok=True)
        (root / "rationales" / dataset).mkdir(parents=True, exist_ok=True)
        (root / dataset / f"{split}.json").write_text(json.dumps(tweets))
        (root / "rationales" / dataset / f"{split}.json").write_text(json.dumps(records))
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("mabsa"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tiny_test_checkpoint(tmp_path_factory.mktemp("tiny"))


def test_loader_joins_rationales(tiny_data):
    ex = load_split(tiny_data, "twitter2015", "train")
    assert len(ex) == 24 and ex[0].spans == [(4, 6, "POS"), (8, 10, "NEU")]
    assert ex[0].description == "A photo about RT."
    # both aspects' reasons, each cut to its first two sentences
    assert ex[0].rationale == "Sentiment: POS. Chuck Bass is discussed. | Sentiment: NEU. # MCM is discussed."
    masked = load_split(tiny_data, "twitter2015", "train", rationale_source="reasons_masked")[0]
    assert "Chuck Bass" not in masked.rationale and MASK_TERM in masked.rationale
    bare = load_split(tiny_data, "twitter2015", "train", rationale_source="none", use_description=False)[0]
    assert bare.rationale is None and bare.description is None


def test_rationale_file_overrides_reasons(tiny_data, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"image_id": "train0_1.jpg", "text": "x", "rationale": "Girona did well."}) + "\n")
    ex = load_split(tiny_data, "twitter2015", "train", rationale_file=path)
    assert ex[1].rationale == "Girona did well." and ex[0].rationale is None


@pytest.mark.data
def test_real_data_join(data_dir):
    ex = load_split(data_dir, "twitter2015", "train")
    assert len(ex) == 2101 and sum(e.rationale is not None for e in ex) == 2099
    assert sum(len(e.spans) for e in ex) == 3179


def _train(tiny_data, tiny_ckpt, out, epochs=2, **overrides):
    model, tokenizer = load_checkpoint(tiny_ckpt)
    s = TrainSettings(data_dir=tiny_data, out=out, epochs=epochs, batch_size=8, lr=1e-3, seed=3,
                      threads=1, **{"cache_dir": None, **overrides})
    return Trainer(s, model, tokenizer).fit()


def _history(result):
    return [{k: h[k] for k in ("epoch", "loss", "dev")} for h in result["history"]]


def test_training_is_deterministic_and_resumable(tiny_data, tiny_ckpt, tmp_path):
    a = _train(tiny_data, tiny_ckpt, tmp_path / "a")
    b = _train(tiny_data, tiny_ckpt, tmp_path / "b")
    assert _history(a) == _history(b) and len(a["history"]) == 2
    assert a["history"][1]["loss"] < a["history"][0]["loss"]
    assert {"model.safetensors", "config.json", "metrics.json"} <= {p.name for p in (tmp_path / "a").iterdir()}
    # a third epoch continues from the saved state instead of starting over
    c = _train(tiny_data, tiny_ckpt, tmp_path / "a", epochs=3)
    assert len(c["history"]) == 3 and _history(c)[:2] == _history(a)


EMA_AND_SMOOTHING = {"ema_decay": 0.9, "label_smoothing": 0.1}


def test_weight_ema_averages_and_swaps_back():
    from training.ema import WeightEMA

    layer = torch.nn.Linear(2, 1)
    start = layer.weight.detach().clone()
    ema = WeightEMA(layer, decay=0.75)
    with torch.no_grad():
        layer.weight.add_(4.0)
    ema.update()
    expected = start + 1.0  # 0.75 * start + 0.25 * (start + 4)
    with ema.swapped_in():
        assert torch.allclose(layer.weight, expected)
    assert torch.allclose(layer.weight, start + 4.0)
    assert torch.allclose(ema.state_dict()["weight"], expected)


def test_training_with_ema_and_label_smoothing_saves_the_average(tiny_data, tiny_ckpt, tmp_path):
    plain = _train(tiny_data, tiny_ckpt, tmp_path / "plain", epochs=1)
    averaged = _train(tiny_data, tiny_ckpt, tmp_path / "averaged", epochs=1, **EMA_AND_SMOOTHING)
    assert _history(averaged) != _history(plain)
    # one epoch is the best one: its checkpoint holds the average, not the last weights
    state = torch.load(tmp_path / "averaged" / "train_state" / "state.pt", weights_only=False)
    saved = dict(load_checkpoint(tmp_path / "averaged")[0].named_parameters())
    differing = [n for n in state["ema"] if not torch.equal(state["ema"][n], state["model"][n])]
    assert differing and all(torch.equal(saved[n], state["ema"][n]) for n in differing)


def test_rdrop_adds_the_disagreement_of_two_dropout_draws(tiny_data, tiny_ckpt, tmp_path):
    from training.data import make_batch

    model, tokenizer = load_checkpoint(tiny_ckpt)
    s = TrainSettings(data_dir=tiny_data, out=tmp_path, threads=1, cache_dir=None, rdrop_alpha=4.0)
    trainer = Trainer(s, model, tokenizer)
    tensors, _ = make_batch(trainer.train_set[:8], tokenizer, model.config)
    labels = tensors.pop("labels")
    plain = trainer._tag_loss(model(**tensors), labels)
    assert torch.allclose(trainer._loss(tensors, labels), plain)  # eval mode: both draws agree, KL = 0
    model.train()
    losses = []
    for alpha in (4.0, 1e-12):  # the same two dropout draws, with and without the KL's weight
        trainer.s.rdrop_alpha = alpha
        torch.manual_seed(1)
        losses.append(trainer._loss(tensors, labels))
    assert losses[0] > losses[1] + 1e-3
    with_rdrop = _train(tiny_data, tiny_ckpt, tmp_path / "rdrop", epochs=1, rdrop_alpha=1.0)
    assert _history(with_rdrop) == _history(_train(tiny_data, tiny_ckpt, tmp_path / "again", epochs=1, rdrop_alpha=1.0))
    assert _history(with_rdrop) != _history(_train(tiny_data, tiny_ckpt, tmp_path / "plain", epochs=1))


def test_layer_lr_decay_scales_each_encoder_layer_below_the_top(tiny_ckpt):
    from training.train import _optimizer

    model, _ = load_checkpoint(tiny_ckpt)  # 2 encoder layers
    lrs = {id(p): g["lr"] for g in _optimizer(model, TrainSettings(lr=1.0, layer_lr_decay=0.5,
                                                                   new_layer_lr_scale=5.0)).param_groups
           for p in g["params"]}
    named = dict(model.named_parameters())
    assert lrs[id(named["text_encoder.encoder.layer.1.output.dense.weight"])] == 1.0
    assert lrs[id(named["text_encoder.encoder.layer.0.output.dense.weight"])] == 0.5
    assert lrs[id(named["text_encoder.embeddings.word_embeddings.weight"])] == 0.25
    assert lrs[id(named["head.weight"])] == 5.0
    assert len({id(p) for p in model.parameters() if p.requires_grad}) == len(lrs)


@pytest.mark.parametrize("options", [{}, EMA_AND_SMOOTHING], ids=["plain", "ema"])
def test_a_kill_while_saving_the_state_resumes_from_the_epoch_before(tiny_data, tiny_ckpt, tmp_path, monkeypatch,
                                                                     options):
    """With a weight average, the average is part of the state: the resumed run is the same."""
    clean = _train(tiny_data, tiny_ckpt, tmp_path / "clean", epochs=3, **options)
    real_save, calls = torch.save, []

    def killed_during_second_state_write(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            Path(f).write_bytes(b"half a state")
            raise SystemExit(143)  # what SIGTERM raises in `lrsa`
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", killed_during_second_state_write)
    with pytest.raises(SystemExit):
        _train(tiny_data, tiny_ckpt, tmp_path / "killed", epochs=3, **options)
    monkeypatch.setattr(torch, "save", real_save)
    resumed = _train(tiny_data, tiny_ckpt, tmp_path / "killed", epochs=3, **options)
    assert _history(resumed) == _history(clean)


def test_a_state_of_the_earlier_layout_still_resumes(tiny_data, tiny_ckpt, tmp_path):
    """Earlier runs kept the last weights in train_state/last.safetensors beside state.pt."""
    import shutil

    from safetensors.torch import save_model

    _train(tiny_data, tiny_ckpt, tmp_path / "new", epochs=1)
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    path = tmp_path / "old" / "train_state" / "state.pt"
    state = torch.load(path, weights_only=False)
    model, _ = load_checkpoint(tiny_ckpt)
    model.load_state_dict(state.pop("model"))
    save_model(model, str(path.parent / "last.safetensors"))
    torch.save(state, path)
    old, new = (_train(tiny_data, tiny_ckpt, tmp_path / name, epochs=2) for name in ("old", "new"))
    assert len(old["history"]) == 2 and _history(old) == _history(new)
    assert not (path.parent / "last.safetensors").exists()  # rewritten in the one-file layout


def test_joint_training_on_both_datasets_stops_on_their_mean(tiny_data, tiny_ckpt, tmp_path):
    import shutil

    from training.evaluate import run_eval
    from training.settings import EvalSettings

    data = shutil.copytree(tiny_data, tmp_path / "data")
    write_dataset(data, ("train", "dev"), (2, 3), "twitter2017", TWEETS[:2])
    model, tokenizer = load_checkpoint(tiny_ckpt)
    s = TrainSettings(data_dir=data, dataset="twitter2015,twitter2017", out=tmp_path / "joint", epochs=1,
                      batch_size=8, lr=1e-3, seed=3, threads=1, cache_dir=None)
    trainer = Trainer(s, model, tokenizer)
    assert len(trainer.train_set) == 24 + 4  # both train splits
    result = trainer.fit()
    each = result["dev_by_dataset"]
    assert set(each) == {"twitter2015", "twitter2017"} and each["twitter2015"] != each["twitter2017"]
    assert result["dev"]["jmasa"]["f1"] == pytest.approx((each["twitter2015"]["jmasa"]["f1"]
                                                          + each["twitter2017"]["jmasa"]["f1"]) / 2)
    # the checkpoint scores each dataset on its own as the run did
    for name in each:
        again = run_eval(EvalSettings(data_dir=data, dataset=name, checkpoint=tmp_path / "joint", threads=1))
        assert again["posts"] == (8 if name == "twitter2015" else 6) and again["jmasa"] == each[name]["jmasa"]


def test_dataset_names_are_checked(capsys):
    from pydantic import ValidationError

    from lrsa_cli.main import main

    with pytest.raises(ValidationError, match="unknown dataset"):
        TrainSettings(dataset="twitter2015,twitter2019")
    assert main(["eval", "--dataset", "twitter2015,twitter2017"]) == 2
    assert "one dataset at a time" in capsys.readouterr().err


def _run_cli(argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True), None)
    args = parser.parse_args(argv)
    return args.func(args)


def test_eval_command_on_test_split_is_deterministic(tiny_data, tiny_ckpt, capsys):
    argv = ["eval", "--data-dir", str(tiny_data), "--dataset", "twitter2015", "--split", "test",
            "--checkpoint", str(tiny_ckpt), "--json", "--threads", "1"]
    assert _run_cli(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["posts"] == 8 and set(first) >= {"jmasa", "mate", "masc"}
    assert set(first["jmasa"]) == {"precision", "recall", "f1"}
    assert set(first["masc"]) == {"accuracy", "macro_f1", "recall_neg", "recall_neu", "recall_pos"}
    assert _run_cli(argv + ["--no-rationale"]) == 0
    capsys.readouterr()
    assert _run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out) == first


def test_ablation_table_reports_mean_std_and_n(tmp_path):
    from training.ablations import collect, markdown_table

    for seed, f1 in ((1, 60.0), (2, 64.0)):
        run = tmp_path / "twitter2015" / "dual" / f"seed{seed}"
        run.mkdir(parents=True)
        dev = {"jmasa": {"f1": f1}, "mate": {"f1": 80.0}, "masc": {"accuracy": 70.0}}
        (run / "metrics.json").write_text(json.dumps({"dev": dev, "best_epoch": seed, "train_seconds_total": 600}))
    (tmp_path / "twitter2015" / "text-only" / "seed1").mkdir(parents=True)  # unfinished: no metrics.json
    rows = collect(tmp_path)
    assert [(r["variant"], len(r["runs"])) for r in rows] == [("dual", 2)]
    line = markdown_table(rows).splitlines()[-1]
    assert "| 2 | 62.0 ± 2.8 | 80.0 ± 0.0 | 70.0 ± 0.0 | 1/2 | 10 |" in line


def test_rescore_evaluates_finished_runs_again_and_the_table_prefers_it(tiny_data, tiny_ckpt, tmp_path):
    import shutil

    from training.ablations import collect, markdown_table, rescore
    from training.evaluate import DECODING, run_eval
    from training.settings import AblationSettings, EvalSettings

    run = tmp_path / "twitter2015" / "dual-no-rationale" / "seed1"
    shutil.copytree(tiny_ckpt, run)
    trained = {"dataset": "twitter2015", "rationale_source": "reasons", "no_rationale": True,
               "no_description": False, "rationale_file": None, "limit": None}
    old_dev = {"jmasa": {"f1": 1.0}, "mate": {"f1": 2.0}, "masc": {"accuracy": 3.0}}
    (run / "metrics.json").write_text(json.dumps({"dev": old_dev, "best_epoch": 1, "train_seconds_total": 60,
                                                  "settings": trained}))
    assert "| argmax |" in markdown_table(collect(tmp_path))  # a run from before the field existed

    rescore(AblationSettings(data_dir=tiny_data, out=tmp_path, threads=1))
    scores = json.loads((run / "dev_eval.json").read_text())
    # the run's own streams: evaluated without the rationale it was trained without
    want = run_eval(EvalSettings(data_dir=tiny_data, checkpoint=run, no_rationale=True, threads=1))
    assert scores["decoding"] == DECODING and scores["jmasa"] == want["jmasa"]
    assert scores["jmasa"] != run_eval(EvalSettings(data_dir=tiny_data, checkpoint=run, threads=1))["jmasa"]
    (row,) = collect(tmp_path)
    assert row["runs"][0]["dev"]["jmasa"] == want["jmasa"] and row["runs"][0]["decoding"] == DECODING
    assert f"| {DECODING} |" in markdown_table([row])

    # a run trained with the current decoding is not evaluated again
    fresh = tmp_path / "twitter2015" / "dual" / "seed1"
    shutil.copytree(tiny_ckpt, fresh)
    (fresh / "metrics.json").write_text(json.dumps({"dev": old_dev, "decoding": DECODING, "settings": trained}))
    rescore(AblationSettings(data_dir=tiny_data, out=tmp_path, threads=1))
    assert not (fresh / "dev_eval.json").exists()


def test_ablations_reject_an_unknown_variant(capsys):
    from lrsa_cli.main import main

    assert main(["ablations", "--variants", "dual,dual-inner9", "--report-only"]) == 2
    assert "unknown variant(s) dual-inner9" in capsys.readouterr().err


def test_init_from_starts_at_the_checkpoints_weights(tmp_path) -> None:
    import torch

    from lrsa.model import load_checkpoint, tiny_test_checkpoint
    from training.settings import TrainSettings
    from training.train import build_model

    ckpt = tiny_test_checkpoint(tmp_path / "ckpt", seed=3)
    model, tokenizer = build_model(TrainSettings(init_from=ckpt, out=tmp_path / "out"))
    saved, _ = load_checkpoint(ckpt)
    assert model.config.to_json() == saved.config.to_json()  # its architecture, not the settings' defaults
    assert all(torch.equal(w, saved.state_dict()[n]) for n, w in model.state_dict().items())
    assert model.config.encoder_config["hidden_size"] == 32  # the tiny test encoder, not MiniLM's 384
