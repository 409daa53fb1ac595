"""Verification of Open Badges 3.0 credentials: every check reported, none skipped silently.

Checks (``VerificationReport.checks``, stable names):

- ``format``: a JSON credential with an embedded proof, or a compact JWS (VC-JWT).
- ``contexts``: VC 2.0 first and OB 3.0 second (OB 3.0 §B.1.1); every context known offline.
- ``proof``: the ``eddsa-rdfc-2022`` proof or the VC-JWT signature verifies, and a JWT's
  claims match the credential.
- ``issuer_key``: the key belongs to the issuer: the verification method's controller is
  ``issuer.id`` and the issuer's DID document lists it for ``assertionMethod``; a JWT
  ``kid`` lives under the issuer's own origin and is one of its published keys.
- ``status``: the status list credential verifies and the credential's bit is not set.
- ``dates``: ``validFrom`` is not in the future and ``validUntil`` has not passed.
- ``schema``: the OB 3.0 AchievementCredential JSON Schema (bundled, 2019-09) passes.

Every input is measured against :mod:`service.issuer.limits` first (size, nesting, JSON
values, proofs, status entries) and canonicalised on a work budget, so a hostile document
costs a bounded amount of CPU and fails the check it broke; an unexpected error inside a
check fails that check with its reason (one log line), never the whole verification.

Keys, DID documents and status lists come from a :class:`Resolver`: the deployment's own
issuer is resolved from its keyring and database (offline); anything else only through
the optional ``fetch`` callable (the CLI passes an httpx fetcher when asked to).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema_rs

from service import jws
from service.errors import BadInput
from service.issuer import (
    canon,
    contexts,
    dataintegrity,
    keys,
    limits,
    multibase,
    statuslist,
    vcjwt,
)
from service.issuer.types import Check, VerificationReport

__all__ = ["Resolver", "parse_input", "verify"]

OB_CONTEXT = re.compile(r"^https://purl\.imsglobal\.org/spec/ob/v3p0/context(-3\.\d\.\d)*\.json$")
JWS_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
MAX_KID = 2048  # a key URL; a longer one is refused before it is looked up or echoed

Fetch = Callable[[str], Any]  # URL -> parsed JSON (dict) ; raises on failure
# (document, proof config, base URL, limits) -> hashData; raises what hash_data raises
RemoteHasher = Callable[[Mapping[str, Any], Mapping[str, Any], str, limits.Limits], bytes]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolver:
    """Where verification finds keys and status lists.

    Args:
        keyring: this deployment's issuer keys (its DID resolves locally).
        status_list: this deployment's signed status list credentials by URL.
        fetch: optional network fetcher for other issuers; ``None`` means offline.
        hasher: where canonicalisation runs, given ``(document, proof config, base URL,
            limits)``; ``None`` runs it in this thread (the service passes its verifier
            processes, :mod:`service.issuer.pool`).
    """

    keyring: keys.Keyring | None
    status_list: Callable[[str], Mapping[str, Any] | None]
    fetch: Fetch | None = None
    hasher: RemoteHasher | None = None

    @property
    def base_url(self) -> str:
        return self.keyring.base_url if self.keyring else "https://invalid.invalid"

    @property
    def loader(self) -> contexts.DocumentLoader:
        return contexts.loader_for(self.base_url)

    def hasher_for(self, bounds: limits.Limits) -> dataintegrity.Hasher | None:
        remote = self.hasher
        if remote is None:
            return None
        base = self.base_url
        return lambda document, config: remote(document, config, base, bounds)

    def did_document(self, did: str) -> Mapping[str, Any]:
        if self.keyring is not None and did == self.keyring.did:
            return keys.did_document(self.keyring)
        if did.startswith("did:key:"):
            mb = did[len("did:key:") :]
            multibase.decode_multikey_ed25519(mb)
            vm = f"{did}#{mb}"
            method = {"id": vm, "type": "Multikey", "controller": did, "publicKeyMultibase": mb}
            return {"id": did, "verificationMethod": [method], "assertionMethod": [vm]}
        if did.startswith("did:web:") and self.fetch is not None:
            doc = self.fetch(keys.did_web_url(did))
            if not isinstance(doc, Mapping) or doc.get("id") != did:
                raise LookupError(f"the DID document of {did} does not describe {did}")
            return doc
        raise LookupError(f"cannot resolve {did} offline (not this deployment's issuer)")

    def jwk(self, kid: str) -> Mapping[str, Any]:
        if self.keyring is not None and kid.startswith(self.keyring.base_url + keys.KEYS_PATH):
            found = self.keyring.jwk(kid[len(self.keyring.base_url + keys.KEYS_PATH) :])
            if found is None:
                raise LookupError(f"{kid} is not one of this issuer's keys")
            return found
        # http:// too: the fetcher itself refuses plain http beyond this machine.
        if self.fetch is not None and kid.startswith(("https://", "http://")):
            doc = self.fetch(kid)
            if not isinstance(doc, Mapping):
                raise LookupError(f"{kid} did not return a JWK")
            return {**doc, "kid": kid}
        raise LookupError(f"cannot fetch key {kid} offline (not this deployment's key)")

    def status_list_credential(self, url: str) -> Mapping[str, Any]:
        local = self.status_list(url)
        if local is not None:
            return local
        if self.fetch is not None and url.startswith("https://"):
            doc = self.fetch(url)
            if isinstance(doc, Mapping):
                return doc
        raise LookupError(f"cannot fetch status list {url} offline")


def _shape_problem(value: Any, bounds: limits.Limits) -> str | None:
    """Why parsed JSON is too deep or too large to verify (``None`` when it is not)."""
    stack = [(value, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > bounds.max_json_values:
            return f"it holds more than {bounds.max_json_values} JSON values"
        if depth > bounds.max_depth:
            return f"it nests deeper than {bounds.max_depth} levels"
        if isinstance(node, Mapping):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return None


def parse_input(
    data: str | bytes | Mapping[str, Any], bounds: limits.Limits = limits.DEFAULT
) -> tuple[str, Any]:
    """``("ldp", dict)``, ``("jwt", token)`` or ``("unknown", reason)`` for raw input."""
    if isinstance(data, Mapping):
        problem = _shape_problem(data, bounds)
        if problem:
            return "unknown", problem
        return ("ldp", dict(data)) if "proof" in data else ("unknown", "it has no proof")
    if len(data) > bounds.max_bytes:
        return "unknown", f"it is larger than {bounds.max_bytes} bytes"
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    if JWS_RE.match(text):
        return "jwt", text
    try:
        parsed = json.loads(text)
    except ValueError:
        return "unknown", "it is neither JSON nor a compact JWS"
    except RecursionError:
        return "unknown", f"it nests deeper than {bounds.max_depth} levels"
    problem = _shape_problem(parsed, bounds)
    if problem:
        return "unknown", problem
    if isinstance(parsed, str) and JWS_RE.match(parsed.strip()):
        return "jwt", parsed.strip()
    if not isinstance(parsed, dict):
        return "unknown", "the JSON is not an object"
    if "proof" not in parsed:
        return "unknown", "the JSON credential has no embedded proof"
    return "ldp", parsed


def _parse_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("missing")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


def _check_contexts(credential: Mapping[str, Any], loader: contexts.DocumentLoader) -> Check:
    ctx = credential.get("@context")
    if not isinstance(ctx, list) or len(ctx) < 2:
        return Check("contexts", False, "@context must list the VC 2.0 and OB 3.0 contexts")
    if ctx[0] != contexts.VC_V2:
        return Check("contexts", False, f"the first @context must be {contexts.VC_V2}")
    if not (isinstance(ctx[1], str) and OB_CONTEXT.match(ctx[1])):
        return Check("contexts", False, "the second @context must be an OB 3.0 context")
    for item in ctx:
        if isinstance(item, str):
            try:
                loader(item, None)
            except Exception:
                return Check("contexts", False, f"context {item} is not known offline")
    return Check("contexts", True, "VC 2.0 and OB 3.0 contexts, all known offline")


def _check_dates(
    credential: Mapping[str, Any], now: dt.datetime, skew: dt.timedelta = dt.timedelta(0)
) -> Check:
    try:
        valid_from = _parse_time(credential.get("validFrom"))
    except ValueError:
        return Check("dates", False, "validFrom is missing or not a date-time with a zone")
    if valid_from > now + skew:
        return Check("dates", False, f"it is not valid yet (validFrom {credential['validFrom']})")
    if "validUntil" in credential:
        try:
            valid_until = _parse_time(credential.get("validUntil"))
        except ValueError:
            return Check("dates", False, "validUntil is not a date-time with a zone")
        if valid_until <= now:
            return Check("dates", False, f"it expired on {credential['validUntil']}")
        return Check(
            "dates", True, f"valid from {credential['validFrom']} until {credential['validUntil']}"
        )
    return Check("dates", True, f"valid from {credential['validFrom']}, no expiry")


@functools.cache
def _schema_validator() -> jsonschema.Draft201909Validator:
    return jsonschema.Draft201909Validator(contexts.achievement_credential_schema())


@functools.cache
def _fast_schema_validator() -> jsonschema_rs.Draft201909Validator:
    # Formats are not asserted (2019-09 makes them annotations; the python validator above
    # has no format checker either) and every $ref is inside the bundled schema.
    return jsonschema_rs.Draft201909Validator(
        contexts.achievement_credential_schema(), validate_formats=False, offline=True
    )


def _check_schema(credential: Mapping[str, Any]) -> Check:
    # jsonschema-rs answers "valid" first (bench/README.md, Credential cost); anything it
    # does not call valid goes to the python validator, whose verdict and message stand
    # (tests/issuer/test_schema_fast.py checks that both agree on issued and broken ones).
    try:
        if _fast_schema_validator().is_valid(credential):
            return Check("schema", True, SCHEMA_OK)
    except (ValueError, TypeError, OverflowError, RecursionError):
        pass  # a value it cannot represent: the python validator decides
    validator = _schema_validator()
    errors = sorted(validator.iter_errors(credential), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        return Check(
            "schema", False, f"the OB 3.0 JSON Schema fails at {where}: {first.message[:200]}"
        )
    return Check("schema", True, SCHEMA_OK)


SCHEMA_OK = "conforms to the OB 3.0 AchievementCredential JSON Schema"


def _find_method(doc: Mapping[str, Any], method: str) -> Mapping[str, Any] | None:
    for vm in doc.get("verificationMethod", []) or []:
        if isinstance(vm, Mapping) and vm.get("id") == method:
            return vm
    return None


def _in_assertion(doc: Mapping[str, Any], method: str) -> bool:
    for ref in doc.get("assertionMethod", []) or []:
        if ref == method or (isinstance(ref, Mapping) and ref.get("id") == method):
            return True
    return False


def _usable_proof(credential: Mapping[str, Any], bounds: limits.Limits) -> dict[str, Any] | str:
    """The first eddsa-rdfc-2022 assertion proof, or why there is none."""
    try:
        proofs = dataintegrity.proofs_of(credential)
    except dataintegrity.ProofError as exc:
        return str(exc)
    if len(proofs) > bounds.max_proofs:
        return f"it carries {len(proofs)} proofs; a verifier checks at most {bounds.max_proofs}"
    usable = [
        p
        for p in proofs
        if p.get("type") == dataintegrity.PROOF_TYPE
        and p.get("cryptosuite") == dataintegrity.CRYPTOSUITE
        and p.get("proofPurpose") == "assertionMethod"
    ]
    if not usable:
        return "no DataIntegrityProof with cryptosuite eddsa-rdfc-2022 for assertionMethod"
    return usable[0]


def _check_signature(
    credential: Mapping[str, Any],
    proof: Mapping[str, Any],
    vm_doc: Mapping[str, Any],
    resolver: Resolver,
    bounds: limits.Limits,
) -> Check:
    """The proof's signature checked with the verification method's Ed25519 key."""
    try:
        public = multibase.decode_multikey_ed25519(str(vm_doc.get("publicKeyMultibase", "")))
    except multibase.MultibaseError as exc:
        return Check("proof", False, f"the key is not an Ed25519 Multikey: {exc}")
    try:
        dataintegrity.verify(
            credential,
            proof,
            public_key=public,
            loader=resolver.loader,
            bounds=bounds,
            hasher=resolver.hasher_for(bounds),
        )
    except limits.LimitExceeded as exc:
        return Check("proof", False, f"the proof cannot be checked: {exc.detail}")
    except dataintegrity.ProofError as exc:
        return Check("proof", False, f"the eddsa-rdfc-2022 proof fails: {exc}")
    except canon.UndefinedTermError as exc:
        return Check("proof", False, f"{exc.detail}")
    except BadInput as exc:
        return Check("proof", False, f"the credential is not valid JSON-LD: {exc.detail}")
    return Check("proof", True, "eddsa-rdfc-2022 proof verifies")


def _check_di_proof(
    credential: Mapping[str, Any], resolver: Resolver, bounds: limits.Limits
) -> tuple[Check, Check]:
    issuer_id = vcjwt.issuer_id(credential)
    proof = _usable_proof(credential, bounds)
    if isinstance(proof, str):
        return Check("proof", False, proof), Check("issuer_key", False, "no usable proof")
    method = str(proof.get("verificationMethod", ""))
    controller = method.split("#", 1)[0]
    if not issuer_id or controller != issuer_id:
        key_check = Check(
            "issuer_key",
            False,
            f"the signing key {method} is controlled by {controller}, not by the issuer "
            f"{issuer_id}",
        )
        return Check("proof", False, "the proof was not made with an issuer key"), key_check
    try:
        did_doc = resolver.did_document(controller) if controller.startswith("did:") else None
    except (LookupError, ValueError, multibase.MultibaseError) as exc:
        return (
            Check("proof", False, f"the issuer's keys cannot be found: {exc}"),
            Check("issuer_key", False, str(exc)),
        )
    vm_doc: Mapping[str, Any]
    if did_doc is None:
        # controller#publicKeyMultibase (the 1EdTech example style): the key is named by
        # the proof itself and nothing the issuer publishes binds it, so it proves nothing
        # about who signed; the signature is still checked and reported.
        fragment = method.split("#", 1)[1] if "#" in method else ""
        vm_doc = {"publicKeyMultibase": fragment}
        key_check = Check(
            "issuer_key",
            False,
            f"the key {fragment or method} is only named in the proof; the issuer "
            f"{controller} publishes no DID document that lists it",
        )
    else:
        found = _find_method(did_doc, method)
        if found is None or not _in_assertion(did_doc, method):
            return (
                Check("proof", False, "the signing key is not one of the issuer's keys"),
                Check(
                    "issuer_key",
                    False,
                    f"{method} is not an assertion key in the issuer's "
                    "DID document (wrong or unknown key)",
                ),
            )
        vm_doc = found
        key_check = Check("issuer_key", True, f"{method} is an assertion key of {controller}")
    return _check_signature(credential, proof, vm_doc, resolver, bounds), key_check


def _check_status(
    credential: Mapping[str, Any], resolver: Resolver, now: dt.datetime, bounds: limits.Limits
) -> Check:
    status = credential.get("credentialStatus")
    if status is None:
        return Check("status", True, "no status list: the credential cannot be revoked")
    entries = status if isinstance(status, list) else [status]
    if len(entries) > bounds.max_status_entries:
        return Check(
            "status",
            False,
            f"it has {len(entries)} status entries; a verifier checks at most "
            f"{bounds.max_status_entries}",
        )
    lists: dict[str, Mapping[str, Any]] = {}  # each list is fetched and verified once
    for item in entries:
        try:
            url, index, purpose = statuslist.parse_entry(item)
        except statuslist.StatusListError as exc:
            return Check("status", False, f"the status entry is unusable: {exc}")
        list_cred = lists.get(url)
        if list_cred is None:
            try:
                list_cred = resolver.status_list_credential(url)
            except Exception as exc:
                return Check("status", False, f"the status list cannot be checked: {exc}")
        sub = list_cred.get("credentialSubject", {})
        if not isinstance(sub, Mapping) or sub.get("statusPurpose") != purpose:
            return Check("status", False, "the status list has another purpose than the entry")
        if url not in lists:
            problem = _status_list_problem(list_cred, credential, resolver, now, bounds)
            if problem:
                return Check("status", False, f"the status list is not trustworthy: {problem}")
            lists[url] = list_cred
        try:
            bits = statuslist.decode_list(str(sub.get("encodedList", "")))
            if statuslist.get_bit(bits, index):
                return Check(
                    "status",
                    False,
                    f"it has been revoked (status list {url}, entry {index})"
                    if purpose == "revocation"
                    else f"its {purpose} bit is set",
                )
        except statuslist.StatusListError as exc:
            return Check("status", False, f"the status list is malformed: {exc}")
    return Check("status", True, "not revoked")


def _status_list_problem(
    list_cred: Mapping[str, Any],
    credential: Mapping[str, Any],
    resolver: Resolver,
    now: dt.datetime,
    bounds: limits.Limits,
) -> str | None:
    if vcjwt.issuer_id(list_cred) != vcjwt.issuer_id(credential):
        return "it was issued by someone else"
    problem = _shape_problem(list_cred, bounds)
    if problem:
        return problem
    proof_check, key_check = _check_di_proof(list_cred, resolver, bounds)
    if not key_check.ok:
        return key_check.detail
    if not proof_check.ok:
        return proof_check.detail
    if "validUntil" in list_cred:
        try:
            if _parse_time(list_cred["validUntil"]) <= now:
                return "it has expired"
        except ValueError:
            return "its validUntil is not a date-time with a zone"
    return None


def _jwt_failed(proof: str, key: str) -> tuple[Check, Check, None]:
    """A VC-JWT that could not be checked: why, and what that means for the issuer key."""
    return Check("proof", False, proof), Check("issuer_key", False, key), None


def _check_jwt(token: str, resolver: Resolver) -> tuple[Check, Check, dict[str, Any] | None]:
    try:
        header = jws.unverified_header(token)
    except RecursionError:
        return _jwt_failed("malformed JWS: the header nests too deeply", "no usable key")
    except jws.TokenError as exc:
        return _jwt_failed(f"malformed JWS: {exc.detail}", "no usable key")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in jws.ALLOWED_ALGORITHMS:
        allowed = " or ".join(sorted(jws.ALLOWED_ALGORITHMS))
        return _jwt_failed(f"the JWS header alg is {_brief(alg)}, not {allowed}", "no usable key")
    kid = header.get("kid")
    if not isinstance(kid, str):
        return _jwt_failed("the JWS header has no kid", "no kid")
    if len(kid) > MAX_KID:
        return _jwt_failed(
            f"the JWS header kid is longer than {MAX_KID} characters", "no usable kid"
        )
    try:
        jwk = resolver.jwk(kid)
        public = jws.public_key_from_jwk({**jwk, "kid": kid}, default_alg=alg)
    except (LookupError, jws.TokenError) as exc:
        detail = exc.detail if isinstance(exc, jws.TokenError) else str(exc)
        return _jwt_failed(f"the signing key cannot be found: {detail}", f"unknown key: {detail}")
    try:
        claims = vcjwt.verify_signature(token, [public])
    except vcjwt.VcJwtError as exc:
        return _jwt_failed(f"the VC-JWT signature fails: {exc}", "the key did not verify the token")
    problem = _shape_problem(claims, limits.DEFAULT)
    if problem:
        return _jwt_failed(
            f"the VC-JWT payload is unusable: {problem}", "the token's payload was not read"
        )
    problems = vcjwt.claims_mismatch(claims)
    credential = vcjwt.credential_of(claims)
    issuer_id = vcjwt.issuer_id(credential) or ""
    if issuer_id.startswith("did:web:"):
        origin = keys.did_web_url(issuer_id).rsplit("/", 1)[0].removesuffix("/.well-known") + "/"
    else:
        origin = issuer_id.rstrip("/") + "/"
    if resolver.keyring is not None and issuer_id == resolver.keyring.did:
        origin = resolver.keyring.base_url + "/"
    key_check = (
        Check("issuer_key", True, f"{kid} is a published key of {issuer_id}")
        if kid.startswith(origin)
        else Check("issuer_key", False, f"the key {kid} does not belong to the issuer {issuer_id}")
    )
    proof_check = (
        Check("proof", False, "the JWT claims contradict the credential: " + "; ".join(problems))
        if problems
        else Check("proof", True, f"VC-JWT {alg} signature verifies")
    )
    return proof_check, key_check, credential


def _brief(value: Any) -> str:
    """A short, printable rendering of an input value for a report."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _failed(name: str, exc: BaseException) -> Check:
    """A check that raised: it fails with the reason, logged as one line (no traceback)."""
    log.warning(
        "verification check %s failed unexpectedly: %s: %.200s", name, type(exc).__name__, exc
    )
    return Check(name, False, f"the {name} check could not be completed ({type(exc).__name__})")


def verify(
    data: str | bytes | Mapping[str, Any],
    *,
    resolver: Resolver,
    now: dt.datetime,
    clock_skew: dt.timedelta = dt.timedelta(seconds=60),
    bounds: limits.Limits = limits.DEFAULT,
) -> VerificationReport:
    """Verify one credential (JSON with an embedded proof, or a compact JWS).

    Args:
        data: the credential as parsed JSON, JSON text or a compact JWS.
        resolver: where keys and status lists come from.
        now: the verification time.
        clock_skew: how far ``validFrom`` may lie ahead of ``now`` (the issuer's clock may
            run slightly ahead of the verifier's).
        bounds: the most work the input may cost (size, nesting, proofs, canonicalization).

    Returns:
        The report; ``valid`` only when every check passed. It never raises for any
        input: a check that cannot be completed fails with its reason.
    """
    try:
        fmt, value = parse_input(data, bounds)
    except Exception as exc:  # a report for every input, whatever breaks
        fmt, value = "unknown", f"it could not be read ({type(exc).__name__})"
        log.warning("verification input unreadable: %s: %.200s", type(exc).__name__, exc)
    if fmt == "unknown":
        check = Check(
            "format",
            False,
            f"unknown format: {value} (expected an OB 3.0 "
            "credential with an embedded proof, or a VC-JWT)",
        )
        return VerificationReport(valid=False, checks=(check,), format="unknown")
    checks: list[Check] = []
    credential: dict[str, Any] | None
    if fmt == "jwt":
        checks.append(Check("format", True, "VC-JWT (compact JWS)"))
        try:
            proof_check, key_check, credential = _check_jwt(value, resolver)
        except Exception as exc:
            proof_check, key_check, credential = (
                _failed("proof", exc),
                Check("issuer_key", False, "no usable key"),
                None,
            )
        if credential is None:
            return VerificationReport(
                valid=False, checks=(*checks, proof_check, key_check), format="jwt"
            )
        checks.append(_guarded("contexts", _check_contexts, credential, resolver.loader))
        checks += [proof_check, key_check]
    else:
        credential = value
        checks.append(Check("format", True, "JSON credential with an embedded proof"))
        checks.append(_guarded("contexts", _check_contexts, credential, resolver.loader))
        try:
            checks += list(_check_di_proof(credential, resolver, bounds))
        except Exception as exc:
            checks += [_failed("proof", exc), Check("issuer_key", False, "not checked")]
    checks.append(_guarded("status", _check_status, credential, resolver, now, bounds))
    checks.append(_guarded("dates", _check_dates, credential, now, clock_skew))
    checks.append(_guarded("schema", _check_schema, credential))
    cred_id = credential.get("id")
    return VerificationReport(
        valid=all(c.ok for c in checks),
        checks=tuple(checks),
        format="jwt" if fmt == "jwt" else "ldp",
        credential_id=cred_id if isinstance(cred_id, str) else None,
        issuer=vcjwt.issuer_id(credential),
        credential=credential,
    )


def _guarded(name: str, check: Callable[..., Check], *args: Any) -> Check:
    try:
        return check(*args)
    except Exception as exc:
        return _failed(name, exc)
