"""Settings of the rationale engine (env LRSA_RATIONALE_<FIELD>); the worker pool and the CLI extend them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from lrsa import offline_models
from lrsa.rationale import DEFAULT_MODEL
from lrsa.rationale.prompts import PROMPT_VERSION, TEMPLATES
from lrsa.settings import LrsaSettings


class RationaleSettings(LrsaSettings):
    """The rationale engine (env LRSA_RATIONALE_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_RATIONALE_")

    model: str = Field(DEFAULT_MODEL, description="rationale LLM: HF id, local folder, the offline default, or a named offline model (`lrsa models list`)")
    vlm_model: str | None = Field(None, description="vision-language model (HF id/folder) describing images; none = text only")
    model_cache_dir: Path | None = Field(None, description="where converted models are cached (~/.cache/lrsa/models)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    dtype: str = Field("auto", description="auto (bf16 on GPU and on CPUs with native bf16, else fp32), bfloat16, float16, float32")
    prompt_version: str | None = Field(None, description="prompt template version (lrsa/rationale/prompts.py): v1 "
                                       "free prose; v2 few-shot 'Name: sentiment - reason' lines; v3 v2 plus the "
                                       "post's candidate names; v4-v6 for an instruct model that knows sentiment "
                                       "(polarity rules, @-mentions, v5/v6 a label bias); none: the named offline "
                                       "model's own (v6 for qwen2.5-coder-1.5b-instruct), else "
                                       f"{PROMPT_VERSION} (docs/rationale.md, Rationale quality)")
    max_new_tokens: int = Field(64, ge=1, description="longest rationale, in tokens")
    slots: int = Field(32, ge=1, description="rows decoded together (continuous-batching slots)")
    max_len: int = Field(640, ge=16, description="prompt + rationale tokens per slot (KV cache length); a prompt "
                         "longer than max_len - max_new_tokens loses its start (few-shot prompts: v3 250-330 "
                         "tokens, v4/v5 440-520)")
    cuda_graphs: bool | None = Field(None, description="capture the decode step as CUDA graphs (default: on GPU)")
    compile: bool = Field(False, description="torch.compile the decode step")
    cache_size: int = Field(10_000, ge=0, description="rationale cache entries (0 disables)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's)")

    @model_validator(mode="after")
    def _model_prompt(self) -> RationaleSettings:
        """No version set: the one measured for this named offline model, else the default."""
        if self.prompt_version is None:
            known = offline_models.MODELS.get(self.model)
            self.prompt_version = (known.prompt_version if known else None) or PROMPT_VERSION
        elif self.prompt_version not in TEMPLATES:
            raise ValueError(f"unknown prompt version {self.prompt_version!r}; known: {', '.join(sorted(TEMPLATES))}")
        return self

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
