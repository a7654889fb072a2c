"""Synthetic logs: seeded lifecycles, run through the engine, with seeded violations."""
