"""Per-unit roofline costs, vectorized over arrays of candidate layouts."""
