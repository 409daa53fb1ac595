"""Evidence sources: LMS data connectors, CSV import and the push API, all writing into
the evidence store (normalised results before they are mapped to competencies).

- ``types``      value types: Result, VerificationEvent, Verification (5 ordered levels),
                 SourceKind, Asserter, Problem, SyncReport
- ``store``      apply() (match learners, idempotent upsert, revisions, events),
                 list_evidence() with effective verification, link_person()
- ``csvimport``  parse() (pure) and import_csv() — columns in docs/csv-import.md
- ``push``       the push API body and apply_batch()
- ``connectors`` Moodle web services and Canvas REST readers (httpx enters here)
- ``sync``       sync_course(), connector_for() a stored source_connection
- ``router``     /api/evidence, /api/courses/{id}/evidence[/import]
- ``errors``     SourceError tree (retryable or final)

This package imports neither ``lti``, ``issuer`` nor ``assessment``; ``flows`` converts
``store.EvidenceRecord`` into the engine's Evidence.
"""
