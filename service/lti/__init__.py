"""LTI 1.3 tool side: launches, registrations, keys, deep linking, AGS and NRPS.

Modules: ``adapter`` (the pylti1p3 seam), ``launch`` (login and launch checks), ``keys``
(the tool's keys), ``jwks`` (platform key sets), ``platforms`` (registrations),
``registration`` (dynamic registration, Canvas JSON), ``deep_linking``, ``services``
(tokens, NRPS, AGS), ``roles``, ``router`` (protocol endpoints).
"""
