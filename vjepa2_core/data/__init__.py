"""Datasets, writers and image transforms."""
