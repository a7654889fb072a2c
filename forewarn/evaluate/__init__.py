"""The per-object evaluation, in Python objects: tests/oracle.py's oracle only (forewarn evaluates in
forewarn.relational)."""
