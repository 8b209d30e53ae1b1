"""The fused small language model (SLM) of LRSA, in one file.

    post text ──> text encoder ──────────────────────────┐ h [B, T, D]
    rationale ──> rationale encoder ─> text→rationale cross-attention ─┐
    image description (+ image features, projected) ─> text→image cross-attention ─┤
                                   gated sum back into the text stream, LayerNorm ──┘
                                   ──> linear head: sentiment-aware BIO tag per token

With `inner_fusion_layers=N` (3 by default) a dual cross-attention also runs before each of the
text encoder's last N layers, over the memory encoder's states at that same depth, its
projections copied from that layer's pretrained self-attention (which already matches a token to
its mentions, as it does for concatenation) and its gates zero at initialisation; rationale and
image stay separate memories.

One pass gives JMASA: aspect spans with a sentiment each (see lrsa.labels). A missing rationale
or image is a fully masked memory: its cross-attention contributes exactly zero, so the model
serves posts without them; training drops each stream at random (modality dropout) so it
learns to. `fusion="concat"` is the baseline that appends rationale and description to the
post as a second segment of one sequence; `fusion="text_only"` ignores them.

Checkpoint folder: model.safetensors + config.json (FusedSLMConfig, with the encoder's own
config inside, so no pretrained weights are needed to load) + the tokenizer files.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from lrsa.labels import NUM_LABELS, ROLES, SENTIMENTS
from lrsa.model_pack import resolve_checkpoint
from lrsa.offline_models import default_text_encoder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class FusedSLMConfig:
    text_encoder: str = field(default_factory=default_text_encoder)  # HF id or local path
    # How rationale and description are encoded: "shared" = by the text encoder itself
    # (fine-tuned through all streams); "separate" = by a fine-tuned copy; "frozen" = by a copy
    # kept at its pretrained weights (no gradient, so training can cache its outputs).
    rationale_encoder: Literal["shared", "separate", "frozen"] = "frozen"
    fusion: Literal["dual_cross_attention", "concat", "text_only"] = "dual_cross_attention"
    use_image_features: bool = False  # raw-image branch; off until trained on data with images
    image_encoder: str = "efficientnet-lite0"  # see lrsa.image
    image_feature_dim: int = 1280
    max_text_len: int = 128  # sub-word tokens
    max_rationale_len: int = 128
    max_description_len: int = 128
    cross_attention_heads: int = 6
    # Dual only: also fuse before each of the text encoder's last N layers (BERT-style encoders),
    # layer-aligned and initialised from that layer's self-attention; 0 = after the encoder only.
    # 3 measured best (docs/model.md: +1.7 JMASA F1 on T15, +0.9 on T17 over 0).
    inner_fusion_layers: int = 3
    dropout: float = 0.1
    modality_dropout: float = 0.3  # per stream and post, in training only
    num_labels: int = NUM_LABELS
    # "joint": one linear layer scores the 7 tags. "factorized": one scores the role (O/B/I),
    # another the sentiment, and a tag's log-probability is their sum (so the sentiment classifier
    # learns from aspect words only). "attention": factorized, and the sentiment layer reads a
    # self-attention over the post first (started from the encoder's last self-attention).
    sentiment_head: Literal["joint", "factorized", "attention"] = "joint"
    encoder_config: dict[str, Any] | None = None  # the text encoder's HF config, filled on build
    # temperature and bias of the aspect confidences (lrsa.calibration), fitted on dev after
    # training; None: raw confidences
    confidence_calibration: dict[str, float] | None = None

    @property
    def share_rationale_encoder(self) -> bool:
        return self.rationale_encoder == "shared"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FusedSLMConfig:
        data = json.loads(text)
        data.setdefault("inner_fusion_layers", 0)  # written before inner fusion existed
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _build_encoder(config: FusedSLMConfig, pretrained: bool) -> nn.Module:
    """The Hugging Face encoder: pretrained weights from `text_encoder`, or random from its config."""
    if pretrained:
        encoder = AutoModel.from_pretrained(config.text_encoder, add_pooling_layer=False)
        config.encoder_config = encoder.config.to_dict()
        return encoder
    if config.encoder_config is None:
        raise ValueError("config.encoder_config is needed to build the encoder without weights")
    enc_cfg = dict(config.encoder_config)
    return AutoModel.from_config(AutoConfig.for_model(enc_cfg.pop("model_type"), **enc_cfg),
                                 add_pooling_layer=False)


class CrossAttention(nn.Module):
    """Multi-head attention of the text tokens (queries) over a memory (keys/values).

    A post whose memory is fully masked (rationale or image missing) gets an exact zero output.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        S = memory.shape[1]
        q = self.query(x).view(B, T, self.heads, D // self.heads).transpose(1, 2)
        k, v = self.key_value(memory).split(D, dim=-1)
        k = k.view(B, S, self.heads, D // self.heads).transpose(1, 2)
        v = v.view(B, S, self.heads, D // self.heads).transpose(1, 2)
        mask = memory_mask.bool()
        present = mask.any(dim=-1)
        # An all-masked row would give NaN; let it attend anywhere and zero its output below.
        allowed = mask | ~present[:, None]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        y = self.out(y.transpose(1, 2).reshape(B, T, D))
        return y * present[:, None, None].to(y.dtype)


class DualCrossAttentionFusion(nn.Module):
    """Text attends to the rationale and, separately, to the image stream; each result is
    gated per token and feature (the text decides how much to take) and added back.

    zero_init (for a fusion inside the encoder, as in Flamingo): each stream also passes a
    learnt tanh gate that starts at 0, and there is no LayerNorm, so at initialisation the
    fusion is the identity and the pretrained layers above it see their usual input.
    """

    def __init__(self, dim: int, heads: int, dropout: float, zero_init: bool = False):
        super().__init__()
        self.text_to_rationale = CrossAttention(dim, heads, dropout)
        self.text_to_image = CrossAttention(dim, heads, dropout)
        self.rationale_gate = nn.Linear(2 * dim, dim)
        self.image_gate = nn.Linear(2 * dim, dim)
        self.opening = nn.Parameter(torch.zeros(2)) if zero_init else None
        self.norm = nn.Identity() if zero_init else nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, rationale: torch.Tensor, rationale_mask: torch.Tensor,
                image: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        r = self.text_to_rationale(h, rationale, rationale_mask)
        i = self.text_to_image(h, image, image_mask)
        g_r = torch.sigmoid(self.rationale_gate(torch.cat([h, r], dim=-1)))
        g_i = torch.sigmoid(self.image_gate(torch.cat([h, i], dim=-1)))
        if self.opening is not None:
            g_r, g_i = g_r * torch.tanh(self.opening[0]), g_i * torch.tanh(self.opening[1])
        return self.norm(h + self.drop(g_r * r) + self.drop(g_i * i))


# rationale [B, R, K*D], its mask, image [B, S, K*D], its mask: K depths side by side (see memory_depths)
Memories = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"inner_fusion_layers needs a BERT-style encoder (.encoder.layer), not {type(encoder).__name__}")
    return layers


def _attention_projections(layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
    """(query, key, value, output) linear layers of an encoder layer's self-attention: BERT names
    them attention.self.{query,key,value} and attention.output.dense (MiniLM), MPNet
    attention.attn.{q,k,v,o} (all-mpnet-base-v2)."""
    attn = layer.attention
    if hasattr(attn, "self"):
        return attn.self.query, attn.self.key, attn.self.value, attn.output.dense
    if hasattr(attn, "attn"):
        return attn.attn.q, attn.attn.k, attn.attn.v, attn.attn.o
    raise ValueError(f"inner fusion does not know the self-attention of {type(layer).__name__}")


def _copy_self_attention(cross: CrossAttention, layer: nn.Module) -> None:
    """Start a cross-attention as the layer's own self-attention."""
    query, key, value, out = _attention_projections(layer)
    with torch.no_grad():
        cross.query.load_state_dict(query.state_dict())
        cross.key_value.weight.copy_(torch.cat([key.weight, value.weight]))
        cross.key_value.bias.copy_(torch.cat([key.bias, value.bias]))
        cross.out.load_state_dict(out.state_dict())


class FusedSLM(nn.Module):
    """Text + rationale + image (description and/or features) -> tag logits [B, T, NUM_LABELS]."""

    def __init__(self, config: FusedSLMConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        self._copies = 1  # see copies_in_batch
        self.text_encoder = _build_encoder(config, pretrained)
        dim = self.text_encoder.config.hidden_size
        self.memory_encoder: nn.Module | None = None  # None: the text encoder encodes the memories
        if config.fusion == "dual_cross_attention":
            if config.rationale_encoder != "shared":
                self.memory_encoder = copy.deepcopy(self.text_encoder)
            if config.rationale_encoder == "frozen":
                self.memory_encoder.requires_grad_(False)
            self.fusion = DualCrossAttentionFusion(dim, config.cross_attention_heads, config.dropout)
            self._add_inner_fusion(dim)
        elif config.fusion == "concat" and getattr(self.text_encoder.config, "type_vocab_size", 0) < 2:
            # the baseline marks the rationale segment with token types, which MPNet has not
            raise ValueError(f"fusion concat needs an encoder with token types (BERT-style), not "
                             f"{type(self.text_encoder).__name__}; use dual_cross_attention")
        if config.use_image_features:
            self.image_proj = nn.Sequential(nn.Linear(config.image_feature_dim, dim), nn.LayerNorm(dim))
        self.dropout = nn.Dropout(config.dropout)
        self._add_head(dim)

    def _add_head(self, dim: int) -> None:
        if self.config.sentiment_head == "joint":
            self.head = nn.Linear(dim, self.config.num_labels)
            return
        self.head = nn.Linear(dim, len(ROLES))  # roles; the sentiment has its own layer
        self.sentiment = nn.Linear(dim, len(SENTIMENTS))
        if self.config.sentiment_head == "attention":
            heads = self.text_encoder.config.num_attention_heads
            self.sentiment_attention = CrossAttention(dim, heads, self.config.dropout)
            self.sentiment_norm = nn.LayerNorm(dim)
            with contextlib.suppress(ValueError):  # BERT-style: start from its top self-attention
                _copy_self_attention(self.sentiment_attention, _encoder_layers(self.text_encoder)[-1])

    def _tag_logits(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T, NUM_LABELS]. Factorized heads give log p(role) + log p(sentiment) per tag, so
        a softmax over them is exactly p(role) * p(sentiment) and decoding is unchanged."""
        if self.config.sentiment_head == "joint":
            return self.head(self.dropout(h))
        roles = self.head(self.dropout(h)).log_softmax(-1)
        if self.config.sentiment_head == "attention":
            h = self.sentiment_norm(h + self.sentiment_attention(h, h, attention_mask))
        sentiments = self.sentiment(self.dropout(h)).log_softmax(-1)
        o, b, i = roles.unbind(-1)
        tags = [o] + [role + sentiments[..., k] for k in range(len(SENTIMENTS)) for role in (b, i)]
        return torch.stack(tags, dim=-1)  # the order of lrsa.labels.LABELS

    @property
    def memory_depths(self) -> list[int]:
        """Hidden-state indices of the memory streams: the inputs of the last N encoder layers
        (one per inner fusion), then the encoder's output (the fusion after it)."""
        total = self.text_encoder.config.num_hidden_layers
        return [*range(total - self.config.inner_fusion_layers, total), total]

    def _add_inner_fusion(self, dim: int) -> None:
        """Fusions before the text encoder's last N layers, run by forward pre-hooks on those
        layers while forward() holds the post's memories (hooks keep the HF encoder intact)."""
        self._memories: Memories | None = None
        n = self.config.inner_fusion_layers
        if not n:
            return
        layers = _encoder_layers(self.text_encoder)
        if n > len(layers):
            raise ValueError(f"inner_fusion_layers={n} exceeds the text encoder's {len(layers)} layers")
        layers = layers[-n:]
        heads = self.text_encoder.config.num_attention_heads
        self.inner_fusion = nn.ModuleList(
            DualCrossAttentionFusion(dim, heads, self.config.dropout, zero_init=True) for _ in layers)
        for depth, (layer, fusion) in enumerate(zip(layers, self.inner_fusion)):
            _copy_self_attention(fusion.text_to_rationale, layer)
            _copy_self_attention(fusion.text_to_image, layer)
            layer.register_forward_pre_hook(partial(self._fuse_inside, fusion, depth))

    def _depth(self, memory: torch.Tensor, depth: int) -> torch.Tensor:
        dim = self.head.in_features
        return memory[..., depth * dim:(depth + 1) * dim]

    def _fuse_inside(self, fusion: DualCrossAttentionFusion, depth: int, _layer: nn.Module, args: tuple) -> tuple:
        if self._memories is None:  # the encoder encoding a memory stream itself ("shared")
            return args
        rationale, rationale_mask, image, image_mask = self._memories
        hidden = fusion(args[0], self._depth(rationale, depth), rationale_mask, self._depth(image, depth), image_mask)
        return (hidden, *args[1:])

    def train(self, mode: bool = True) -> FusedSLM:
        super().train(mode)
        if self.memory_encoder is not None and self.config.rationale_encoder == "frozen":
            self.memory_encoder.eval()  # a frozen encoder keeps its dropout off
        return self

    def encode_memory(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states of a rationale or description at each of memory_depths, side by side
        [B, S, K*D] (cacheable when frozen)."""
        encoder = self.memory_encoder if self.memory_encoder is not None else self.text_encoder
        if not self.config.inner_fusion_layers:
            return encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        states = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        return torch.cat([states[i] for i in self.memory_depths], dim=-1)

    @contextlib.contextmanager
    def copies_in_batch(self, copies: int) -> Iterator[None]:
        """The batch is `copies` stacked copies of the same posts (R-Drop): modality dropout is
        drawn once per post, so every copy sees the same streams and differs only by dropout."""
        self._copies = copies
        try:
            yield
        finally:
            self._copies = 1

    def _drop_modality(self, mask: torch.Tensor) -> torch.Tensor:
        """Training only: hide the whole stream of a random subset of posts."""
        if not self.training or self.config.modality_dropout <= 0:
            return mask
        keep = torch.rand(mask.shape[0] // self._copies, device=mask.device) >= self.config.modality_dropout
        return mask * keep.repeat(self._copies)[:, None].to(mask.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        rationale_ids: torch.Tensor | None = None,
        rationale_mask: torch.Tensor | None = None,
        image_desc_ids: torch.Tensor | None = None,
        image_desc_mask: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        rationale_states: torch.Tensor | None = None,
        image_desc_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tag logits [B, T, NUM_LABELS] for the text tokens.

        input_ids/attention_mask [B, T]: the post, tokenised by lrsa.predict.encode_batch.
        rationale_ids/rationale_mask [B, R]: the LLM rationale; a row of zeros in the mask (or
            None for the whole batch) means no rationale.
        image_desc_ids/image_desc_mask [B, S]: the LLM's image description, same masking.
        image_features/image_mask [B, N, image_feature_dim]/[B, N]: raw-image features from
            lrsa.image (only when config.use_image_features).
        rationale_states/image_desc_states [B, R|S, D]: precomputed encode_memory() outputs,
            instead of the ids (training caches them when the memory encoder is frozen).
        """
        B = input_ids.shape[0]
        rationale_mask = self._stream_mask(rationale_mask, B, input_ids)
        image_desc_mask = self._stream_mask(image_desc_mask, B, input_ids)
        image_mask = self._stream_mask(image_mask, B, input_ids) if self.config.use_image_features else None
        if self.config.fusion == "concat":
            h = self._encode_concat(input_ids, attention_mask, rationale_ids, rationale_mask,
                                    image_desc_ids, image_desc_mask)
        elif self.config.fusion == "dual_cross_attention":
            h = self._encode_dual(input_ids, attention_mask, self._memories_of(
                rationale_ids, rationale_mask, rationale_states, image_desc_ids, image_desc_mask,
                image_desc_states, image_features, image_mask))
        else:
            h = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self._tag_logits(h, attention_mask)

    def _encode_dual(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, memories: Memories) -> torch.Tensor:
        """The text encoder (its inner fusions' hooks read `memories`), then the fusion after it."""
        self._memories = memories if self.config.inner_fusion_layers else None
        try:
            h = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            self._memories = None
        rationale, rationale_mask, image, image_mask = memories
        top = len(self.memory_depths) - 1
        return self.fusion(h, self._depth(rationale, top), rationale_mask, self._depth(image, top), image_mask)

    @staticmethod
    def _stream_mask(mask: torch.Tensor | None, batch: int, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch, 1, dtype=like.dtype, device=like.device) if mask is None else mask

    def _memory(self, ids: torch.Tensor | None, mask: torch.Tensor,
                states: torch.Tensor | None) -> torch.Tensor:
        if states is not None:
            return states
        if ids is None:  # stream absent for the whole batch: one masked dummy slot
            dim = self.head.in_features * len(self.memory_depths)
            return torch.zeros(mask.shape[0], mask.shape[1], dim, device=mask.device)
        if self.config.rationale_encoder == "frozen":
            with torch.no_grad():
                return self.encode_memory(ids, mask)
        return self.encode_memory(ids, mask)

    def _memories_of(self, rationale_ids, rationale_mask, rationale_states, desc_ids, desc_mask,
                     desc_states, image_features, image_mask) -> Memories:
        rationale = self._memory(rationale_ids, rationale_mask, rationale_states)
        image = self._memory(desc_ids, desc_mask, desc_states)
        if self.config.use_image_features and image_features is not None:
            # The description and the projected image regions form one image memory.
            regions = self.image_proj(image_features).repeat(1, 1, len(self.memory_depths))  # same at each depth
            image = torch.cat([image, regions], dim=1)
            desc_mask = torch.cat([desc_mask, image_mask], dim=1)
        # Both image sources form one stream, so modality dropout hides them together; drawn once
        # per forward, so every fusion point sees the same streams.
        return rationale, self._drop_modality(rationale_mask), image, self._drop_modality(desc_mask)

    def _encode_concat(self, input_ids, attention_mask, rationale_ids, rationale_mask,
                       desc_ids, desc_mask) -> torch.Tensor:
        """Baseline: [CLS] post [SEP] rationale [SEP] description [SEP] as one sequence; the
        second segment's leading [CLS] is dropped and positions count only real tokens."""
        ids, masks = [input_ids], [attention_mask]
        for seg_ids, seg_mask in ((rationale_ids, rationale_mask), (desc_ids, desc_mask)):
            if seg_ids is not None:
                ids.append(seg_ids[:, 1:])
                masks.append(self._drop_modality(seg_mask)[:, 1:])
        ids_all, mask_all = torch.cat(ids, dim=1), torch.cat(masks, dim=1)
        token_type = torch.ones_like(ids_all)
        token_type[:, : input_ids.shape[1]] = 0
        positions = (mask_all.cumsum(dim=1) - 1).clamp(min=0)
        h = self.text_encoder(input_ids=ids_all, attention_mask=mask_all, token_type_ids=token_type,
                              position_ids=positions).last_hidden_state
        return h[:, : input_ids.shape[1]]


def save_checkpoint(directory: str | Path, model: FusedSLM, tokenizer: PreTrainedTokenizerBase) -> Path:
    """Write model.safetensors, config.json and the tokenizer files into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(model.config.to_json() + "\n")
    tokenizer.save_pretrained(str(directory))
    return directory


def load_config(directory: str | Path) -> FusedSLMConfig:
    """The config of a checkpoint folder or packed model (lrsa.model_pack.resolve_checkpoint)."""
    return FusedSLMConfig.from_json((resolve_checkpoint(directory) / CONFIG_FILE).read_text())


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[FusedSLM, PreTrainedTokenizerBase]:
    """The model (in eval mode, on `device`) and tokenizer saved by save_checkpoint, or of a
    packed model (unpacked and checked first: lrsa.model_pack)."""
    directory = resolve_checkpoint(directory)
    model = FusedSLM(load_config(directory), pretrained=False)
    load_model(model, str(directory / WEIGHTS_FILE), device=str(device))
    model.to(device).eval()
    return model, AutoTokenizer.from_pretrained(str(directory))


def tiny_test_checkpoint(directory: str | Path, seed: int = 0, architecture: str = "bert", **overrides: Any) -> Path:
    """A randomly initialised, tiny FusedSLM checkpoint for tests (~1M parameters; uses the
    offline all-MiniLM-L6-v2 tokenizer): the encoder is BERT-architecture (the default tier's
    MiniLM) or, with architecture="mpnet", MPNet's (the accurate tier's all-mpnet-base-v2).
    `overrides` set config fields."""
    tokenizer = AutoTokenizer.from_pretrained(default_text_encoder())
    shape = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=514 if architecture == "mpnet" else 512)
    if architecture == "mpnet":  # MPNet counts positions from its padding id: the tokenizer's
        shape["pad_token_id"] = tokenizer.pad_token_id
    encoder_config = AutoConfig.for_model(architecture, **shape).to_dict()
    overrides.setdefault("inner_fusion_layers", 2)  # fused inside, like the default model
    config = FusedSLMConfig(encoder_config=encoder_config, cross_attention_heads=2, **overrides)
    torch.manual_seed(seed)
    return save_checkpoint(directory, FusedSLM(config, pretrained=False), tokenizer)
