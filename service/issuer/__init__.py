"""Open Badges 3.0 issuing, signing, status lists, verification and delivery.

Public surface for other packages (``flows``, ``web``):

- ``service.issuer.inputs``: the input values (``AwardInput``, ``LevelTemplate``,
  ``EuElements``, ``Learner``, ``EvidenceItem``, ``IssuerProfile``, ...).
- ``service.issuer.service``: ``issue``, ``revoke``, ``unrevoke``, ``rotate_keys``,
  ``repair_status_lists``, ``verify_input``, ``keyring``, ``profile_document``,
  ``credential_url``.
- ``service.issuer.identity``: the deployment's recorded base URL and DID; ``settle``
  (a process adopts it, or refuses another) and ``ensure`` (checked when signing).
- ``service.issuer.build``: pure document builders (``build_credential``, single or
  stacked, ``issuer_profile``).
- ``service.issuer.verify``: ``verify`` with a ``Resolver``; reports are
  ``service.issuer.types.VerificationReport``.
- ``service.issuer.router``: the HTTP endpoints (``router``); the HTML credential page is
  ``service.web.credentials``.

Module map: ``contexts`` (bundled JSON-LD and schema, offline loader), ``canon`` (RDFC-1.0
with a safe-mode check), ``dataintegrity`` (eddsa-rdfc-2022), ``vcjwt`` (VC-JWT through
``service.jws``), ``keys`` (did:web, Multikey, JWKS, rotation), ``statuslist`` (Bitstring
Status List), ``multibase``, ``fetch`` (httpx, only when asked), ``repository``,
``schemas`` (API models).
"""
