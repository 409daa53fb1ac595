"""Database layer: engine, sessions, tables (``service.db.models``) and migrations."""
