"""Step times per serving mode (pd, transformerless, collocated) and prefill pools."""
