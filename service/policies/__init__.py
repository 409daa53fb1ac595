"""Policies and the competency catalogue: storage, versions, bounds, import/export, API."""
