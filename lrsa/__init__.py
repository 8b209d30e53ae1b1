"""LRSA core: schemas, label scheme, the fused SLM, the rationale engine.

The core imports only torch, transformers and pydantic (and each module only what it needs), so
that it runs and is tested without Ray, Kafka or Triton. Adapters (workers/, serving/, training/)
depend on it, never the other way round.
"""

__version__ = "0.1.0"
