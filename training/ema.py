"""Exponential moving average of the trainable weights (evaluated and saved in their place).

Averaging the weights over the last few hundred steps smooths out the noise of small-batch
fine-tuning on a few thousand posts. Only the trainable parameters are tracked: the frozen
memory encoder never changes, so copying it would only cost memory. (torch's AveragedModel
deep-copies the whole model, frozen encoder and fusion hooks included.)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class WeightEMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay)

    @contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[None]:
        """The model carries the averaged weights inside the block, its own ones after it."""
        live = [p.detach().clone() for p in self.params]
        torch._foreach_copy_(self.params, self.shadow)
        try:
            yield
        finally:
            torch._foreach_copy_(self.params, live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        for s, n in zip(self.shadow, self.names):
            s.copy_(state[n])
