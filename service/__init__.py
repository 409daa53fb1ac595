"""microcred: rubric and quiz results to competency levels to signed Open Badges 3.0."""

__version__ = "0.1.0"
