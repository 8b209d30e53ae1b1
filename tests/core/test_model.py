import json

import pytest
import torch

from lrsa.labels import NUM_LABELS
from lrsa.model import FusedSLM, FusedSLMConfig, load_checkpoint, load_config, save_checkpoint, tiny_test_checkpoint
from lrsa.predict import encode_batch

TEXTS = ["RT @ltsChuckBass: Chuck Bass is everything #MCM", "Girona promoted to La Liga"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, tokenizer = load_checkpoint(tiny_test_checkpoint(tmp_path_factory.mktemp("tiny")))
    return model, tokenizer


def _variant(model, **overrides):
    torch.manual_seed(0)
    config = FusedSLMConfig(**{**model.config.__dict__, **overrides})
    return FusedSLM(config, pretrained=False).eval()


@pytest.mark.parametrize("fusion", ["dual_cross_attention", "concat", "text_only"])
def test_forward_shapes(tiny, fusion):
    model, tok = tiny
    m = _variant(model, fusion=fusion)
    tensors, _ = encode_batch(tok, m.config, TEXTS, ["a good guy", None], [None, "a football team"])
    logits = m(**tensors)
    assert logits.shape == (2, tensors["input_ids"].shape[1], NUM_LABELS)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("fusion", ["dual_cross_attention", "concat"])
def test_missing_rationale_content_is_ignored(tiny, fusion):
    """A masked-out rationale must not change the output, whatever its token ids."""
    model, tok = tiny
    m = _variant(model, fusion=fusion)
    tensors, _ = encode_batch(tok, m.config, TEXTS, ["a good guy", "great news for the club"], [None, None])
    tensors["rationale_mask"][1] = 0
    base = m(**tensors)
    tensors["rationale_ids"][1] = torch.randint(1000, 2000, tensors["rationale_ids"][1].shape)
    assert torch.allclose(base, m(**tensors), atol=1e-6)
    # the unmasked post does depend on its rationale
    tensors["rationale_ids"][0, 1:-1] = 1999
    assert not torch.allclose(base[0], m(**tensors)[0])


def test_padding_of_the_rationale_is_ignored(tiny):
    model, tok = tiny
    short, _ = encode_batch(tok, model.config, TEXTS[:1], ["a good guy"], ["a man"])
    padded, _ = encode_batch(tok, model.config, TEXTS, ["a good guy", "a much longer rationale " * 5],
                             ["a man", "a long description of a photo " * 5])
    assert torch.allclose(model(**short)[0], model(**padded)[0, : short["input_ids"].shape[1]], atol=1e-5)


def test_absent_stream_equals_all_masked_stream(tiny):
    model, tok = tiny
    tensors, _ = encode_batch(tok, model.config, TEXTS, None, None)
    assert int(tensors["rationale_mask"].sum()) == 0
    without = {k: v for k, v in tensors.items() if k.startswith(("input", "attention"))}
    assert torch.allclose(model(**tensors), model(**without), atol=1e-6)


def test_modality_dropout_only_in_training(tiny):
    model, tok = tiny
    no_dropout = {**model.config.encoder_config, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    m = _variant(model, modality_dropout=1.0, dropout=0.0, encoder_config=no_dropout)
    tensors, _ = encode_batch(tok, m.config, TEXTS, ["a good guy", "bad"], ["a man", "a team"])
    no_rationale, _ = encode_batch(tok, m.config, TEXTS, None, None)
    m.train()
    dropped = m(**tensors)
    m.eval()
    assert torch.allclose(dropped, m(**no_rationale), atol=1e-6)  # p=1 hides both streams
    assert not torch.allclose(m(**tensors), m(**no_rationale))


def test_stacked_copies_of_a_batch_share_their_modality_dropout(tiny):
    model, _ = tiny
    m = _variant(model, modality_dropout=0.5).train()
    mask = torch.ones(64, 3, dtype=torch.long)
    torch.manual_seed(0)
    with m.copies_in_batch(2):
        paired = m._drop_modality(mask)
    assert torch.equal(paired[:32], paired[32:]) and 0 < int(paired[:, 0].sum()) < 64
    independent = m._drop_modality(mask)  # outside the context each row draws its own
    assert not torch.equal(independent[:32], independent[32:])


@pytest.mark.parametrize("head", ["factorized", "attention"])
def test_factorized_heads_give_role_times_sentiment(tiny, head):
    model, tok = tiny
    m = _variant(model, sentiment_head=head).eval()
    tensors, _ = encode_batch(tok, m.config, TEXTS, ["a good guy", None], None)
    probs = m(**tensors).softmax(-1)
    o, b, i = probs[..., 0], probs[..., [1, 3, 5]], probs[..., [2, 4, 6]]  # B-/I- of POS, NEU, NEG
    roles = torch.stack([o, b.sum(-1), i.sum(-1)], dim=-1)
    sentiment_b, sentiment_i = b / roles[..., 1:2], i / roles[..., 2:3]
    assert torch.allclose(sentiment_b, sentiment_i, atol=1e-5)  # one sentiment per word, for B and I
    assert not torch.allclose(sentiment_b, sentiment_b[..., :1].expand_as(sentiment_b))
    loss = torch.nn.functional.cross_entropy(m.train()(**tensors).flatten(0, 1), torch.zeros(2 * probs.shape[1],
                                             dtype=torch.long))  # every word O
    loss.backward()
    assert m.sentiment.weight.grad.abs().max() < 1e-6  # O words teach no sentiment


def test_frozen_memory_encoder_gets_no_gradient(tiny):
    model, _ = tiny
    m = _variant(model, rationale_encoder="frozen")
    assert not any(p.requires_grad for p in m.memory_encoder.parameters())
    assert _variant(model, rationale_encoder="shared").memory_encoder is None


def test_image_features_branch(tiny):
    model, tok = tiny
    m = _variant(model, use_image_features=True, image_feature_dim=16)
    tensors, _ = encode_batch(tok, m.config, TEXTS, None, None)
    feats = torch.randn(2, 5, 16)
    with_image = m(**tensors, image_features=feats, image_mask=torch.tensor([[1] * 5, [0] * 5]))
    without = m(**tensors)
    assert not torch.allclose(with_image[0], without[0])
    assert torch.allclose(with_image[1], without[1], atol=1e-6)  # masked image: no effect


def test_save_load_round_trip(tiny, tmp_path):
    model, tok = tiny
    m = _variant(model, fusion="concat", max_rationale_len=17)
    save_checkpoint(tmp_path, m, tok)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    assert load_config(tmp_path).max_rationale_len == 17
    loaded, tok2 = load_checkpoint(tmp_path)
    tensors, _ = encode_batch(tok2, loaded.config, TEXTS, ["x y", None], [None, None])
    assert torch.equal(m(**tensors), loaded(**tensors))


def test_efficientnet_lite0_features_feed_the_image_branch(tiny):
    import io

    from PIL import Image

    from lrsa.image import ImageFeatureExtractor

    extractor = ImageFeatureExtractor()  # the offline ImageNet weights
    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (200, 30, 30)).save(buf, format="PNG")
    feats, mask = extractor.features_from_bytes([buf.getvalue()])
    assert feats.shape == (1, 49, 1280) and mask.shape == (1, 49) and torch.isfinite(feats).all()
    model, tok = tiny
    m = _variant(model, use_image_features=True)
    tensors, _ = encode_batch(tok, m.config, TEXTS[:1], None, None)
    assert m(**tensors, image_features=feats, image_mask=mask).shape[-1] == NUM_LABELS


def _opened_inner_fusion(model):
    m = _variant(model, inner_fusion_layers=2)
    for fusion in m.inner_fusion:
        fusion.opening.data.fill_(1.0)  # as training would open the gates
    return m


def test_inner_fusion_starts_as_the_identity(tiny):
    """Zero-gated at initialisation: the same weights give the same logits with or without it."""
    model, tok = tiny
    inner = _variant(model, inner_fusion_layers=2)
    top_only = _variant(model, inner_fusion_layers=0)
    top_only.load_state_dict({k: v for k, v in inner.state_dict().items() if not k.startswith("inner_fusion.")})
    tensors, _ = encode_batch(tok, inner.config, TEXTS, ["a good guy", "great news"], ["a man", None])
    assert torch.allclose(inner(**tensors), top_only(**tensors), atol=1e-6)


def test_inner_fusion_reads_the_rationale_and_keeps_masking_exact(tiny):
    model, tok = tiny
    m = _opened_inner_fusion(model)
    tensors, _ = encode_batch(tok, m.config, TEXTS, ["a good guy", "great news for the club"], ["a man", None])
    base = m(**tensors)
    top_only = _variant(model, inner_fusion_layers=0)
    top_only.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("inner_fusion.")})
    assert not torch.allclose(base, top_only(**tensors), atol=1e-4)  # the inner fusion adds something
    tensors["rationale_mask"][1] = 0
    masked = m(**tensors)
    tensors["rationale_ids"][1] = torch.randint(1000, 2000, tensors["rationale_ids"][1].shape)
    assert torch.allclose(masked, m(**tensors), atol=1e-6)


def test_inner_fusion_survives_save_and_load(tiny, tmp_path):
    model, tok = tiny
    m = _opened_inner_fusion(model)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "ckpt", m, tok))
    tensors, _ = encode_batch(tok, m.config, TEXTS, ["a good guy", "great news"], ["a man", None])
    assert loaded.config.inner_fusion_layers == 2
    assert torch.allclose(m(**tensors), loaded(**tensors), atol=1e-6)


def test_inner_fusion_starts_from_the_layers_own_attention(tiny):
    """Layer-aligned: the cross-attention before a layer starts as that layer's self-attention."""
    model, _ = tiny
    m = _variant(model, inner_fusion_layers=1)
    layer = m.text_encoder.encoder.layer[-1]
    x = torch.randn(2, 5, m.head.in_features)
    context, _ = layer.attention.self(x)
    want = layer.attention.output.dense(context)
    for cross in (m.inner_fusion[0].text_to_rationale, m.inner_fusion[0].text_to_image):
        assert torch.allclose(cross(x, x, torch.ones(2, 5)), want, atol=1e-5)
    assert m.memory_depths == [1, 2]  # the last layer's input, then the encoder's output


def test_config_without_inner_fusion_key_loads_as_top_only(tiny):
    """Checkpoints written before inner fusion existed keep loading as the model they were."""
    model, _ = tiny
    data = json.loads(model.config.to_json())
    del data["inner_fusion_layers"]
    assert FusedSLMConfig.from_json(json.dumps(data)).inner_fusion_layers == 0
    assert FusedSLMConfig().inner_fusion_layers == 3  # while new models fuse inside by default


def test_more_inner_fusions_than_layers_is_a_clear_error(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="inner_fusion_layers=3 exceeds the text encoder's 2 layers"):
        _variant(model, inner_fusion_layers=3)
