"""Connectors to LMS data APIs (Moodle web services, Canvas REST).

A connector only reads: ``fetch_course`` returns every result it could normalise and a
problem for every record it could not, or raises a ``SourceError`` (then nothing is
written). httpx enters the project here.
"""
