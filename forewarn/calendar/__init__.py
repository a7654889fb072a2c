"""calendar stage."""
