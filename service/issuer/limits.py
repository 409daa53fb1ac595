"""How much work verifying one credential may cost (security review H1).

Verification canonicalises whatever document it is given, and RDF Dataset Canonicalization
(RDFC-1.0) is exponential in the worst case: a few blank nodes that all look alike (the
"poison graphs" of RDFC-1.0 §7, Security Considerations) make the Hash N-Degree Quads
step try every permutation of them, recursively. Every input is therefore measured against
these limits *before* the expensive step, and the blank-node work itself runs on a budget,
so a failure costs a bounded amount of CPU whatever the input:

- the document: its size in bytes, how deep its JSON nests, how many JSON values it holds
  (checked before JSON-LD expansion);
- the proofs and status entries a credential may carry (each one costs a canonicalisation);
- JSON-LD's node map: the values of one property of one node are compared pairwise, so
  the squares of their numbers are summed and capped (checked after expansion);
- the RDF dataset: its quads and blank nodes (checked before canonicalisation);
- the blank-node work: one unit per related quad looked at and per blank node placed in a
  permutation (or copied with an issuer) by Hash N-Degree Quads. The budget grows with the
  square of the number of blank nodes that Hash First Degree Quads could not tell apart, the
  way rdf-canonize's ``maxWorkFactor`` relates its deep-iteration limit to them, and is
  capped.

Credentials that people issue stay far inside every limit: microcred's own need no
blank-node work at all, and the limits never change a canonical form, they only refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import BadInput

__all__ = ["DEFAULT", "LimitExceeded", "Limits", "Work"]


class LimitExceeded(BadInput):
    """The document is larger or more complex than a verifier will process."""

    code = "too_complex"
    title = "The credential is too large or too complex to verify"


@dataclass(frozen=True)
class Limits:
    """The bounds of one verification (defaults: :data:`DEFAULT`)."""

    max_bytes: int = 1_000_000  # the text of a credential (a baked-in data: image fits)
    max_depth: int = 64  # credentials nest about 8 levels
    max_json_values: int = 10_000  # objects, arrays and scalars; ours hold about 250
    max_proofs: int = 4
    max_status_entries: int = 4
    max_merge_work: int = 400_000  # Σ n² over the values of each property of each node
    max_quads: int = 4_000  # ours have about 180
    max_blank_nodes: int = 500  # ours have about 15
    work_base: int = 20_000  # blank-node work any document may do
    work_factor: int = 64  # ... plus this times (blank nodes not told apart)²
    max_work: int = 250_000  # ... and never more

    def work_budget(self, undistinguished: int) -> int:
        """The blank-node work allowed when ``undistinguished`` blank nodes share a
        first-degree hash with another one."""
        return min(self.max_work, self.work_base + self.work_factor * undistinguished**2)


DEFAULT = Limits()


class Work:
    """A running count of blank-node work against a budget (one per canonicalisation)."""

    __slots__ = ("budget", "used")

    def __init__(self) -> None:
        self.used = 0
        self.budget: int | None = None  # set once the undistinguished blank nodes are known

    def charge(self, units: int) -> None:
        """Count ``units`` of work; raise once the budget is spent."""
        self.used += units
        if self.budget is not None and self.used > self.budget:
            raise LimitExceeded(
                f"its blank nodes are too alike to put in canonical order within "
                f"{self.budget} steps of work (RDF canonicalization gives up on such "
                "'poison' graphs)",
                hint="Give the objects in the credential ids, or make them differ; a "
                "credential that nests many identical objects cannot be verified.",
            )
