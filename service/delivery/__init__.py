"""Delivery of credentials to external repositories through a transactional outbox.

Independent of ``issuer`` and ``lti``: an outbox row carries a credential id and a payload
snapshot with everything a connector needs; the AGS connector takes an injected poster.
Each kind of repository is one module of ``providers`` (the registry).
"""
