"""Triton fixtures (owned by serving)."""
