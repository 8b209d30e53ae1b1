"""The rationale engine: prompts, continuous-batching generation, cache. See docs/rationale.md."""
