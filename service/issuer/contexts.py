"""Every JSON-LD context and schema the issuer uses, bundled, behind a local loader.

JSON-LD processing happens offline: the loader serves only the bundled copies below and
raises for anything else, so issuing and verifying never reach the network and a remote
context can never change what a signature covers.

Sources of the bundled copies (data files, not code):

- VC 2.0, OB 3.0.3, OB extensions, Data Integrity v1, DID v1: the 1EdTech validator's
  bundle (``1EdTech/digital-credentials-public-validator:inspector-vc/src/main/resources/
  contexts/`` @ 38254719), which is what the official validator resolves them to.
- ``microcred-eu-v1.jsonld``: our own extension context for the EU micro-credential
  elements OB 3.0 has no field for (Council Recommendation 2022/C 243/02, Annex I). It is
  served at ``{base_url}/contexts/microcred-eu-v1.jsonld``; its term IRIs live in the
  deployment-independent ``urn:microcred:eu:v1#`` namespace, so credentials of every
  microcred deployment mean the same thing.
- The OB 3.0 AchievementCredential JSON Schema (json-ld variant, 2019-09 dialect).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from pyld.jsonld import JsonLdError

__all__ = [
    "DATA_INTEGRITY_V1",
    "DID_V1",
    "EU_CONTEXT_PATH",
    "OB_EXTENSIONS",
    "OB_V3",
    "VC_V2",
    "DocumentLoader",
    "achievement_credential_schema",
    "bundled_context",
    "eu_context_url",
    "loader_for",
]

VC_V2 = "https://www.w3.org/ns/credentials/v2"
OB_V3 = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
OB_EXTENSIONS = "https://purl.imsglobal.org/spec/ob/v3p0/extensions.json"
DATA_INTEGRITY_V1 = "https://w3id.org/security/data-integrity/v1"
DID_V1 = "https://www.w3.org/ns/did/v1"
EU_CONTEXT_PATH = "/contexts/microcred-eu-v1.jsonld"
EU_CONTEXT_FILE = "microcred-eu-v1.jsonld"

_FILES = {
    VC_V2: "credentials-v2.jsonld",
    OB_V3: "ob-v3p0-3.0.3.json",
    OB_EXTENSIONS: "ob-v3p0-extensions.json",
    DATA_INTEGRITY_V1: "data-integrity-v1.jsonld",
    DID_V1: "did-v1.jsonld",
}

DocumentLoader = Callable[[str, Mapping[str, Any] | None], dict[str, Any]]


@functools.cache
def bundled_context(name: str) -> dict[str, Any]:
    """A bundled context file by file name (e.g. ``microcred-eu-v1.jsonld``)."""
    text = resources.files("service.issuer").joinpath("data", "contexts", name).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def eu_context_url(base_url: str) -> str:
    """Where a deployment publishes the EU extension context."""
    return base_url.rstrip("/") + EU_CONTEXT_PATH


@functools.cache
def _documents(base_url: str) -> dict[str, dict[str, Any]]:
    docs = {url: bundled_context(name) for url, name in _FILES.items()}
    docs[eu_context_url(base_url)] = bundled_context(EU_CONTEXT_FILE)
    return docs


@functools.cache
def loader_for(base_url: str, extra: tuple[tuple[str, str], ...] = ()) -> DocumentLoader:
    """The offline document loader for a deployment at ``base_url``.

    Args:
        base_url: the public URL of this microcred deployment (its EU context lives there).
        extra: further ``(url, json text)`` pairs, for test vectors with example contexts.

    Returns:
        A pyld document loader that raises ``JsonLdError`` for any URL it does not hold.
    """
    docs = dict(_documents(base_url))
    docs.update({url: json.loads(text) for url, text in extra})

    def load(url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        document = docs.get(url)
        if document is None and url.startswith("https://") and url.endswith(EU_CONTEXT_PATH):
            # Another microcred deployment's copy of the same versioned context: its terms
            # mean what the bundled v1 says (a different copy would only break signatures,
            # since they are checked against this interpretation).
            document = docs[eu_context_url(base_url)]
        if document is None:
            raise JsonLdError(
                f"context {url} is not bundled with microcred (no network access)",
                "jsonld.LoadDocumentError",
                code="loading document failed",
            )
        return {"contextUrl": None, "documentUrl": url, "document": document}

    return load


@functools.cache
def achievement_credential_schema() -> dict[str, Any]:
    """The bundled OB 3.0 AchievementCredential JSON Schema."""
    path = resources.files("service.issuer").joinpath(
        "data", "ob_v3p0_achievementcredential_schema.json"
    )
    schema: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return schema
