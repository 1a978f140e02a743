"""Comparing optimizers and showing what a study learned: comparisons, reports, narrowed spaces."""
