"""A bundled LTI 1.3 platform with a sample course, so the whole flow runs without an LMS.

Modules:

- ``course``    the sample course (members, rubric criteria and levels, quizzes, results)
- ``config``    where the LMS and the installed tool live; the LTI Advantage scopes
- ``keys``      the platform's RSA key, generated once into ``<data_dir>/demo/``
- ``state``     in-memory platform state (launch hints, tokens, line items, scores, links)
- ``platform``  ``DemoPlatform``: login initiation, OIDC auth, id_tokens, client
                credentials, deep-linking returns
- ``services``  NRPS and AGS resources (shapes, filters, paging)
- ``router`` / ``app``  the FastAPI app: ``create_demo_app(config)``
- ``bootstrap`` registration in the tool and both apps: ``build(settings, tool_url=,
                lms_url=, engine=)``
- ``server``    both apps in one process: ``run(...)`` (CLI) and ``running(...)`` (tests)
"""
