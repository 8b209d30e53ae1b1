"""The ablation variants (`lrsa ablations`, training/ablations.py): a table of names, labels and
the TrainSettings fields each changes. Data only, so that the settings can check variant names
without importing the runner."""

from __future__ import annotations

# slug -> (table label, TrainSettings fields that differ from the default model). The default
# dual model fuses inside the encoder's last 3 layers as well as after it.
VARIANTS: dict[str, tuple[str, dict]] = {
    "dual": ("dual cross-attn (reasons + description)", {}),
    "dual-no-rationale": ("dual, description only (no text rationale)", {"no_rationale": True}),
    "dual-no-description": ("dual, no image description", {"no_description": True}),
    "dual-masked": ("dual, reasons with aspect terms masked", {"rationale_source": "reasons_masked"}),
    "concat": ("concat (reasons + description)", {"fusion": "concat"}),
    "concat-masked": ("concat, reasons with aspect terms masked",
                      {"fusion": "concat", "rationale_source": "reasons_masked"}),
    "text-only": ("text only", {"fusion": "text_only", "no_rationale": True, "no_description": True}),
}
# Earlier model: fused after the encoder only. Runnable by name, not part of "all".
TOP_ONLY: dict[str, tuple[str, dict]] = {
    "dual-top": ("dual, fused after the encoder only", {"inner_fusion_layers": 0}),
    "dual-top-no-rationale": ("dual, after the encoder only, description only",
                              {"inner_fusion_layers": 0, "no_rationale": True}),
    "dual-top-masked": ("dual, after the encoder only, reasons masked",
                        {"inner_fusion_layers": 0, "rationale_source": "reasons_masked"}),
    "dual-top-shared": ("dual, after the encoder only, memory through the fine-tuned text encoder",
                        {"inner_fusion_layers": 0, "rationale_encoder": "shared"}),
}
ALL_VARIANTS = {**VARIANTS, **TOP_ONLY}
