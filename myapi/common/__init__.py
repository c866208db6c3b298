"""Shared building blocks of the API: parsing, inputs, errors, representations."""
