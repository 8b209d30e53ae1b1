"""Distillation (issue 29, item 4): a teacher checkpoint's soft tag labels train the student
(training/teacher.py, `lrsa train --teacher`)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from lrsa.model import load_checkpoint, tiny_test_checkpoint
from lrsa.predict import word_probabilities
from test_training import _history, _train, write_dataset
from training.data import load_split, make_batch
from training.settings import TrainSettings
from training.teacher import batch_targets, distillation_loss, soft_labels


def test_the_distillation_term_is_zero_at_the_teacher_and_pulls_towards_it():
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 7)
    targets = teacher.log_softmax(-1)
    targets[0, 3:] = float("nan")  # sub-words and padding carry no soft label
    assert distillation_loss(teacher.clone(), targets, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(2, 5, 7, requires_grad=True)
    loss = distillation_loss(student, targets, 2.0)
    assert loss.item() > 0.01
    loss.backward()
    assert student.grad[0, 3:].abs().sum() == 0  # unlabelled positions get no gradient
    stepped = (student - 10 * student.grad).detach()
    assert distillation_loss(stepped, targets, 2.0) < loss  # a step down the gradient nears the teacher
    # the post weights: a post weighted 0 does not count
    only_first = distillation_loss(student.detach(), targets, 2.0, torch.tensor([1.0, 0.0]))
    alone = distillation_loss(student.detach()[:1], targets[:1], 2.0)
    assert only_first.item() == pytest.approx(alone.item(), rel=1e-5)
    assert distillation_loss(student.detach(), torch.full_like(targets, float("nan")), 2.0).item() == 0.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("mabsa"))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A different architecture from the student (MPNet, as the accurate tier), confident on
    its own tags: its soft labels are what the student should move towards."""
    from lrsa.model import save_checkpoint

    model, tokenizer = load_checkpoint(tiny_test_checkpoint(tmp_path_factory.mktemp("random"), seed=5,
                                                            architecture="mpnet"))
    with torch.no_grad():  # a random head is nearly uniform over the tags: make it decide
        model.head.weight.mul_(30.0)
        model.head.bias.normal_(0.0, 2.0)
    return save_checkpoint(tmp_path_factory.mktemp("teacher"), model, tokenizer)


def test_soft_labels_are_word_level_cached_per_part_and_keyed_by_the_teacher(data, teacher, tmp_path):
    train = load_split(data, "twitter2015", "train")
    parts = {"a": train[:10], "b": train[10:]}
    labels = soft_labels(teacher, parts, tmp_path)
    assert len(labels) == len(train)
    assert [lab.shape for lab in labels] == [(len(ex.words), 7) for ex in train]
    model, tokenizer = load_checkpoint(teacher)
    model.eval()
    text_only = [replace(ex, rationale=None, description=None) for ex in train[:3]]
    assert train[0].rationale and train[0].description
    tensors, firsts = make_batch(text_only, tokenizer, model.config)  # the teacher reads the text by default
    tensors.pop("labels")
    with torch.no_grad():
        logits = model(**tensors)
    for row, lab, f in zip(logits, labels, firsts):  # each word's first sub-word, as the model reads it
        assert torch.allclose(lab.float().exp(), torch.from_numpy(word_probabilities(row, f)), atol=2e-3)
    files = sorted(tmp_path.glob("teacher-*.pt"))
    assert len(files) == 2
    stamps = [f.stat().st_mtime_ns for f in files]
    again = soft_labels(teacher, parts, tmp_path)  # read back, not recomputed
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert all(torch.equal(x, y) for x, y in zip(again, labels))
    other = tiny_test_checkpoint(tmp_path / "other", seed=6, architecture="mpnet")
    soft_labels(other, {"a": parts["a"]}, tmp_path)
    assert len(list(tmp_path.glob("teacher-*.pt"))) == 3  # another teacher: other labels
    with_streams = soft_labels(teacher, {"a": parts["a"]}, tmp_path, text_only=False)
    assert len(list(tmp_path.glob("teacher-*.pt"))) == 4  # the teacher reading the streams: other labels
    assert not all(torch.equal(x, y) for x, y in zip(with_streams, labels[:10]))


def test_batch_targets_meet_the_student_at_each_words_first_sub_word():
    labels = [torch.tensor([[0.0] * 7, [1.0] * 7]), torch.tensor([[2.0] * 7, [float("nan")] * 7])]
    out = batch_targets(labels, [[1, 3], [1, -1]], torch.Size((2, 5, 7)))
    assert out[0, 1, 0] == 0 and out[0, 3, 0] == 1 and out[1, 1, 0] == 2
    labelled = ~out.isnan().any(-1)
    assert labelled.tolist() == [[False, True, False, True, False], [False, True, False, False, False]]


def _agreement(student_dir, teacher_dir, examples) -> float:
    """Share of words where the student's likeliest tag is the teacher's, both reading the text
    (as the teacher labelled it)."""
    examples = [replace(ex, rationale=None, description=None) for ex in examples]
    tags = []
    for ckpt in (student_dir, teacher_dir):
        model, tokenizer = load_checkpoint(ckpt)
        model.eval()
        tensors, firsts = make_batch(examples, tokenizer, model.config)
        tensors.pop("labels")
        with torch.no_grad():
            logits = model(**tensors)
        tags.append([word_probabilities(row, f).argmax(-1) for row, f in zip(logits, firsts)])
    same = sum(int((a == b).sum()) for a, b in zip(*tags))
    return same / sum(len(a) for a in tags[0])


def test_a_student_trained_on_the_teacher_alone_learns_the_teachers_tags(data, teacher, tmp_path):
    student = tiny_test_checkpoint(tmp_path / "student", seed=1)
    train = load_split(data, "twitter2015", "train")
    before = _agreement(student, teacher, train)
    run = _train(data, student, tmp_path / "kd", epochs=3, teacher=teacher, teacher_weight=1.0,
                 cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("teacher-*.pt"))) == 1  # one part: twitter2015
    assert all(math.isfinite(h["loss"]) for h in run["history"])
    assert run["settings"]["teacher"] == str(teacher)
    after = _agreement(tmp_path / "kd", teacher, train)
    _train(data, student, tmp_path / "gold", epochs=3)  # the same training on the gold tags alone
    by_gold = _agreement(tmp_path / "gold", teacher, train)
    assert after > before + 0.3 and after > by_gold + 0.2, (before, after, by_gold)
    # the mixed loss (gold + teacher) is deterministic too
    mixed = _train(data, student, tmp_path / "mixed", epochs=1, teacher=teacher, cache_dir=tmp_path / "cache")
    assert _history(mixed) == _history(_train(data, student, tmp_path / "mixed2", epochs=1, teacher=teacher,
                                              cache_dir=tmp_path / "cache"))


def test_a_teacher_with_r_drop_is_refused_at_the_settings():
    with pytest.raises(ValueError, match="--teacher and --rdrop-alpha"):
        TrainSettings(teacher="x", rdrop_alpha=1.0)
