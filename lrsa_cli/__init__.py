"""The `lrsa` command: the composition root that dispatches to core, workers, serving and training."""
