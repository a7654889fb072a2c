"""The relational evaluation: the log's typed facts in DuckDB, the policy's rules compiled to queries."""
