"""Goodput search: enumerate pool candidates, score them, combine them per budget split, rank."""
