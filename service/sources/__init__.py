"""LMS data connectors that turn results into evidence."""
