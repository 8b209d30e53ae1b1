"""Tiny random models of real architectures for the rationale engine's tests (fast, offline)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlamaForCausalLM, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

from lrsa.rationale.loading import LoadedModel
from lrsa.rationale.prompts import TEMPLATES

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def tiny_llama(vocab_size: int = 300, seed: int = 0) -> LlamaForCausalLM:
    """SmolLM2's architecture (Llama, grouped-query attention, tied embeddings), 2 layers of width 64."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=None, eos_token_id=1, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer knowing the prompt templates' words, with a chat template."""
    words = {w for t in TEMPLATES.values() for part in (t.system, t.text, t.image)
             for w in pre_tokenizers.Whitespace().pre_tokenize_str(part)}
    specials = ["<pad>", "<eos>", "<unk>"]
    extra = {"<", ">", '"', "system", "user", "assistant", "I", "love", "hate", "my", "new", "phone", "RT"}
    vocab = {w: i for i, w in enumerate(specials + sorted({w for w, _ in words} | extra))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


VLM_CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {% if m['content'] is string %}{{ m['content'] }}"
                     "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }}"
                     "{% endif %}{% endfor %}{% endif %} {% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")


def save_tiny_llava(folder) -> str:
    """A LLaVA (CLIP vision tower + Llama) of a few layers with its processor, saved like a hub model."""
    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        tokenizer=tok, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=VLM_CHAT_TEMPLATE, image_token="<image>")
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=1, num_attention_heads=2),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, bos_token_id=None, eos_token_id=1,
                                pad_token_id=0),
        image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def tiny_loaded() -> LoadedModel:
    tok = tiny_tokenizer()
    return LoadedModel(tiny_llama(vocab_size=len(tok)), tok, "tiny-llama", 0.0)


def tiny_rationale_processor():
    """A RationaleProcessor over the tiny model: loadable by dotted path inside the pipeline's Ray actors."""
    from lrsa.rationale.engine import RationaleEngine
    from workers.stages.rationale import RationaleProcessor, RationaleStageSettings

    settings = RationaleStageSettings(device="cpu", slots=2, max_len=320, max_new_tokens=5, threads=1)  # the default prompt fits
    return RationaleProcessor(settings, engine=RationaleEngine(settings, loaded=tiny_loaded()))
