"""Pure competency assessment: evidence + policy -> decision. Standard library only."""
