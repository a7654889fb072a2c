"""log stage."""
