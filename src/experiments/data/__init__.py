"""Datasets and data modules (procedural image generators, Lightning data modules)."""
