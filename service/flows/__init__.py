"""Use cases that cross packages (launch -> sync -> evaluate -> award -> deliver).

The only package that imports ``lti``, ``sources``, ``assessment``, ``policies``, ``issuer``
and ``delivery`` together. Functions add and flush; the caller (route, CLI command)
commits once, so a decision, its credential and the credential's outbox rows are written
in one transaction (STYLE.md "Transactions"). One module per use case, each saying what it
offers: ``launching`` (after a launch), ``wiring`` (the instructor's course wiring),
``mapping`` (LMS items to policy items), ``evaluating`` and ``evaluation_queue`` (docs/scale.md),
``issuing``, ``awarding`` and ``revoking`` (docs/awarding.md), ``syncing`` (from the LMS),
``gradebook`` (AGS write-back), ``learner_view`` and ``learner_store`` (the learner page),
``setup_store`` (a course's setup row).
"""
