"""Regulatory report packages: what a regulator receives per published region-day, signed."""
