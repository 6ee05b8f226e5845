"""Local training lives in backend.training (the aggregator trains its reference direction with
the same code); re-exported here for the trainer's side."""

from backend.training import pseudo_gradient, train_local

__all__ = ["pseudo_gradient", "train_local"]
