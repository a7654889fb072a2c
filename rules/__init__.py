"""The policy in force: one YAML file per rule (package data)."""
