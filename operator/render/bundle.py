"""Everything the operator creates for one attempt, in creation order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.resolve import Problem, Resolution, resolve
from whisperft.operator.render.config import render_config_map
from whisperft.operator.render.meta import Meta
from whisperft.operator.render.network import render_network_policies
from whisperft.operator.render.rayjob import render_rayjob
from whisperft.operator.render.rbac import render_trainer_rbac
from whisperft.operator.render.storage import render_checkpoint_claim
from whisperft.operator.render.trainconfig import build_train_config
from whisperft.operator.settings import Settings
from whisperft.trainer.config import TrainConfig


@dataclass
class Rendered:
    resolution: Resolution
    children: list[dict[str, Any]] = field(default_factory=list)
    config: TrainConfig | None = None

    @property
    def problem(self) -> Problem | None:
        return self.resolution.problem

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [c for c in self.children if c["kind"] == kind]


def render_attempt(
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, attempt: int = 1
) -> Rendered:
    """All children of `attempt`; none when the plan or node pool says no."""
    res = resolve(spec, settings)
    out = Rendered(res)
    if res.problem is not None:
        return out
    config = build_train_config(
        spec,
        meta,
        res.plan,
        res.worker.cpus,
        workers_share=res.claim.workers_share,
        disk=res.disk,
    )
    out.config = config
    claim = render_checkpoint_claim(spec, meta, res.claim.mode or "ReadWriteMany")
    if claim is not None:
        out.children.append(claim)
    out.children.extend(render_trainer_rbac(meta, settings.trainer_service_account.annotations))
    out.children.append(render_config_map(config, meta, attempt))
    # Before the RayJob, so its pods never run unfenced.
    out.children.extend(render_network_policies(meta, settings, attempt))
    out.children.append(render_rayjob(spec, meta, settings, res, attempt))
    return out
