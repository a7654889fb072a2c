"""The production engine: decide what is due, render, deliver, record."""
