import numpy as np
import pytest
import torch

from lrsa.labels import LABEL_TO_ID, NUM_LABELS
from lrsa.model import tiny_test_checkpoint
from lrsa.predict import Predictor, decode_batch, encode_batch, word_probabilities

TEXT = "RT @ltsChuckBass: Chuck Bass is everything #MCM"


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor.from_checkpoint(tiny_test_checkpoint(tmp_path_factory.mktemp("tiny")))


def test_encode_maps_each_word_to_its_first_subword(predictor):
    tensors, meta = encode_batch(predictor.tokenizer, predictor.model.config, [TEXT, "ok"])
    ids = tensors["input_ids"][0].tolist()
    for (word, _, _), first in zip(meta[0].words, meta[0].first_token):
        piece = predictor.tokenizer.convert_ids_to_tokens(ids[first])
        assert word.lower().startswith(piece.lstrip("#")) or piece == "[UNK]"
    assert meta[1].words == [("ok", 0, 2)]


def test_missing_streams_are_masked_rows(predictor):
    tensors, _ = encode_batch(predictor.tokenizer, predictor.model.config, [TEXT, "ok", "x"],
                              ["fine", None, "  "], [None, "a photo", None], return_tensors="np")
    assert isinstance(tensors["rationale_ids"], np.ndarray)
    assert tensors["rationale_mask"].sum(axis=1).tolist()[1:] == [0, 0]
    assert tensors["rationale_mask"][0].sum() > 0
    assert tensors["image_desc_mask"].sum(axis=1).tolist()[0] == 0


def _logits_for(meta, tags_per_word, length):
    logits = torch.full((1, length, NUM_LABELS), -10.0)
    logits[0, :, LABEL_TO_ID["O"]] = 10.0
    for word, tag in tags_per_word.items():
        tok = meta.first_token[word]
        logits[0, tok, :] = -10.0
        logits[0, tok, LABEL_TO_ID[tag]] = 10.0
    return logits


def test_decode_gives_character_offsets_in_the_raw_text(predictor):
    tensors, meta = encode_batch(predictor.tokenizer, predictor.model.config, [TEXT])
    # "Chuck Bass" (words 4, 5) positive, "# MCM" (words 8, 9) neutral
    logits = _logits_for(meta[0], {4: "B-POS", 5: "I-POS", 8: "B-NEU", 9: "I-NEU"},
                         tensors["input_ids"].shape[1])
    (aspects,) = decode_batch(logits, meta, [TEXT])
    assert [(a.term, a.start, a.end, a.sentiment) for a in aspects] == [
        ("Chuck Bass", 18, 28, "positive"), ("#MCM", 43, 47, "neutral")]
    assert all(TEXT[a.start:a.end] == a.term and a.confidence > 0.99 for a in aspects)
    # numpy logits decode the same
    assert decode_batch(logits.numpy(), meta, [TEXT]) == [aspects]


def test_words_cut_off_by_truncation_are_outside_any_aspect():
    probs = word_probabilities(np.zeros((4, NUM_LABELS)), [1, 2, -1])
    assert probs.shape == (3, NUM_LABELS) and probs[2, LABEL_TO_ID["O"]] == 1.0


def test_predictor_end_to_end(predictor):
    texts = [TEXT, "Girona promoted to La Liga", ""]
    out = predictor.predict(texts, rationales=["Positive about Chuck", None, None], batch_size=2)
    assert len(out) == 3 and out[2] == []
    for text, aspects in zip(texts, out):
        assert all(text[a.start:a.end] == a.term and 0 <= a.confidence <= 1 for a in aspects)
    assert predictor.predict(texts, rationales=["Positive about Chuck", None, None]) == out
