"""Typed views the reconcile decides on: the resource, its status and the RayJobs
it controls. Built from plain API bodies; no API calls here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from whisperft import names
from whisperft.operator.api.status import WhisperFineTuneStatus
from whisperft.operator.startup import StartupProblem


@dataclass(frozen=True)
class RayJobView:
    """One RayJob this resource controls (the controller uid was checked)."""

    name: str
    uid: str
    attempt: int | None
    suspend: bool
    status: dict[str, Any] = field(default_factory=dict)
    deleting: bool = False

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> RayJobView:
        md = body.get("metadata") or {}
        label = (md.get("labels") or {}).get(names.LABEL_ATTEMPT)
        return cls(
            name=md.get("name", ""),
            uid=md.get("uid", ""),
            attempt=int(label) if label and str(label).isdigit() else None,
            suspend=bool((body.get("spec") or {}).get("suspend")),
            status=dict(body.get("status") or {}),
            deleting=bool(md.get("deletionTimestamp")),
        )


def controller_uid(body: dict[str, Any]) -> str | None:
    md = body.get("metadata") or {}
    refs = md.get("ownerReferences") or md.get("owner_references") or []
    return next((r.get("uid") for r in refs if r.get("controller")), None)


def owned_rayjobs(
    bodies: Iterable[dict[str, Any]], owner_uid: str | None
) -> tuple[RayJobView, ...]:
    """The RayJobs whose controller is `owner_uid`: a RayJob merely named like ours,
    or one whose name a status field points at, is never acted on."""
    if not owner_uid:
        return ()
    found = [RayJobView.from_body(b) for b in bodies if controller_uid(b) == owner_uid]
    return tuple(sorted(found, key=lambda r: (r.attempt or 0, r.name)))


@dataclass(frozen=True)
class ClaimUser:
    """Another WhisperFineTune whose run directory is (or will be) on a claim."""

    name: str
    created: str  # metadata.creationTimestamp (RFC 3339 sorts as text)
    owns_claim: bool  # the claim is the one the operator made for it


def claim_users(
    claim: str, finetunes: Iterable[dict[str, Any]], claim_controller: str | None
) -> tuple[ClaimUser, ...]:
    """The fine-tunes using `claim`: those naming it, the one the operator made it for
    (by name pattern), and the WhisperFineTune that controls the claim object."""
    out: dict[str, ClaimUser] = {}
    for body in finetunes:
        md = body.get("metadata") or {}
        name = md.get("name", "")
        named = ((body.get("spec") or {}).get("checkpoints") or {}).get("claimName")
        owns = not named and claim == f"{name}-checkpoints"
        if named == claim or owns:
            out[name] = ClaimUser(name, md.get("creationTimestamp") or "", owns)
    if claim_controller:
        prior = out.get(claim_controller)
        out[claim_controller] = ClaimUser(claim_controller, prior.created if prior else "", True)
    return tuple(sorted(out.values(), key=lambda u: u.name))


@dataclass(frozen=True)
class View:
    """One WhisperFineTune as the API last showed it, with its RayJobs."""

    name: str
    namespace: str
    uid: str | None
    generation: int | None
    resource_version: str | None
    spec: dict[str, Any]
    status: WhisperFineTuneStatus
    raw_status: dict[str, Any]
    rayjobs: tuple[RayJobView, ...] = ()
    deleting: bool = False
    startup_problems: tuple[StartupProblem, ...] = ()
    created: str = ""
    # Who else uses the named checkpoint claim; None: not looked up (only before a create).
    claim_users: tuple[ClaimUser, ...] | None = None

    @classmethod
    def of(
        cls,
        body: dict[str, Any],
        rayjob_bodies: Iterable[dict[str, Any]] = (),
        startup_problems: Iterable[StartupProblem] = (),
        claim_users: tuple[ClaimUser, ...] | None = None,
    ) -> View:
        md = body.get("metadata") or {}
        raw = dict(body.get("status") or {})
        return cls(
            name=md["name"],
            namespace=md.get("namespace") or "default",
            uid=md.get("uid"),
            generation=md.get("generation"),
            resource_version=md.get("resourceVersion"),
            spec=dict(body.get("spec") or {}),
            status=WhisperFineTuneStatus.model_validate(raw),
            raw_status=raw,
            rayjobs=owned_rayjobs(rayjob_bodies, md.get("uid")),
            deleting=bool(md.get("deletionTimestamp")),
            startup_problems=tuple(startup_problems),
            created=md.get("creationTimestamp") or "",
            claim_users=claim_users,
        )

    @property
    def attempt(self) -> int | None:
        return self.status.attempt

    def rayjob_for(self, attempt: int | None) -> RayJobView | None:
        if attempt is None:
            return None
        return next((r for r in self.rayjobs if r.attempt == attempt and not r.deleting), None)

    def newer_than(self, attempt: int) -> list[RayJobView]:
        return [r for r in self.rayjobs if (r.attempt or 0) > attempt and not r.deleting]

    def claim_taken_by(self, claim: str | None) -> ClaimUser | None:
        """Another fine-tune with a prior claim on `claim`: the one the claim was made
        for, else the earliest that named it (ties by name), when that is not this one."""
        others = [u for u in self.claim_users or () if u.name != self.name]
        if not claim or not others:
            return None
        owner = next((u for u in others if u.owns_claim), None)
        if owner is not None:
            return owner
        first = min(others, key=lambda u: (u.created, u.name))
        return first if (first.created, first.name) < (self.created, self.name) else None

    def condition(self, kind: str) -> str | None:
        """The status ("True"/"False"/"Unknown") of a condition type, or None."""
        for c in self.status.conditions:
            if c.type.value == kind:
                return c.status.value
        return None
