"""Jinja2 templates for communications and reports (package data)."""
