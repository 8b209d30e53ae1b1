"""Training and evaluating the fused SLM: datasets, training loop, metrics, ablations, rationale batch job."""
