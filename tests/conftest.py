"""Shared test set-up: the project's packages come from the editable install (./run test)."""
