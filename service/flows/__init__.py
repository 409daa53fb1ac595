"""Use cases that cross packages (launch -> sync -> evaluate -> award -> deliver).

The only package that imports ``lti``, ``sources``, ``assessment``, ``policies``, ``issuer``
and ``delivery`` together. Functions add and flush; the caller (route, CLI command)
commits once, so a decision, its credential and the credential's outbox rows are written
in one transaction (STYLE.md "Transactions"). One module per use case:

- ``launching``: ``after_launch`` (queues the evaluation and a sync request); the launch's
  own rows (person, course, enrolment, the course's gradebook endpoint) are
  ``lti.store.record_user``'s
- ``wiring``: course wiring by the instructor (award rules, sources, competencies)
- ``mapping``: ``item_key`` / ``available_items`` — the LMS items a policy's ``items`` name
- ``evaluating``: ``evaluate_course`` (``person_ids``: some learners), ``preview_course``
  (no writes)
- ``evaluation_queue`` (``service.evaluation``, docs/scale.md): ``run_evaluation_jobs`` (a
  worker step), ``run_course_jobs`` (work on one course's queue here),
  ``evaluate_new_evidence`` (queue, and evaluate at once when few), ``enqueue_new_evidence``
- ``issuing``, ``awarding``, ``revoking``: ``approve``, ``attest``, ``revoke_award``,
  ``revoke_credential``, ``allow_reaward``, ``keep_award`` (a person's revocation blocks
  re-award: docs/awarding.md)
- ``syncing``: ``fetch_course`` (HTTP, outside any transaction) then ``store_fetched``; the
  scheduled sync
- ``gradebook``: ``ags_poster`` wires delivery's AGS connector to the LTI AGS client
- ``learner_view``: a learner's status and awards
- ``setup_store``: a course's setup row
"""
