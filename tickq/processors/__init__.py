"""Processors for the platform's job types, one module per integration."""
