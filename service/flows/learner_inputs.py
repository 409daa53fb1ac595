"""The digest of a learner's evaluation inputs (``learner_state``): one implementation,
the launch's (``service.lti.store``), so that what the evaluation queue stamps and what a
launch compares are computed alike."""

from __future__ import annotations

from service.lti.store import LearnerState, learner_inputs, learner_state

__all__ = ["LearnerState", "learner_inputs", "learner_state"]
