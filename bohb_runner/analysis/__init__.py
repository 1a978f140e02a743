"""What studies found: comparisons of optimizers, reports, and narrowed spaces for a second study."""
