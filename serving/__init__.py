"""Serving the fused SLM with Triton: model repository, ONNX export, the tritonserver launcher."""
