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

    @classmethod
    def of(
        cls,
        body: dict[str, Any],
        rayjob_bodies: Iterable[dict[str, Any]] = (),
        startup_problems: Iterable[StartupProblem] = (),
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

    def condition(self, kind: str) -> str | None:
        """The status ("True"/"False"/"Unknown") of a condition type, or None."""
        for c in self.status.conditions:
            if c.type.value == kind:
                return c.status.value
        return None
