"""Round trips of the create handler (issue 15: the operator's share of the
apply -> RayJob latency is API requests, one after another).

The handler decides first from Kopf's body and the RayJob index (no request),
then, before it creates anything, from one fresh read of the resource and its
RayJobs: one GET and one LIST, never a LIST before the decision as well.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from fake_cluster import FakeCluster

from whisperft.operator import reconcile
from whisperft.operator.handlers import lifecycle
from whisperft.operator.settings import Settings

pytestmark = pytest.mark.unit

NS = "ml"
MINIMAL = Path(__file__).parents[2] / "manifests" / "examples" / "minimal.yaml"


def _finetune(name: str) -> dict[str, Any]:
    doc = yaml.safe_load(MINIMAL.read_text())
    doc["metadata"] = {"name": name, "namespace": NS}
    return dict(doc)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(reconcile, "_api", lambda _manager: fake)
    monkeypatch.setattr(lifecycle, "settings", Settings)
    return fake


def _reads(cluster: FakeCluster) -> Counter[str]:
    return Counter(c[0] for c in cluster.calls if c[0] in {"get_finetune", "list_rayjobs"})


def test_a_new_resource_is_read_once_before_its_children_are_created(
    cluster: FakeCluster,
) -> None:
    cluster.apply_finetune(_finetune("ft"))
    cluster.calls.clear()
    lifecycle.create(body=kopf.Body(cluster.finetune(NS, "ft")), rayjobs={})
    assert cluster.rayjob_names(NS) == ["ft-1"]
    assert _reads(cluster) == {"get_finetune": 1, "list_rayjobs": 1}
    assert [c[0] for c in cluster.calls].count("patch_status") == 1


def test_a_resumed_resource_with_nothing_to_do_makes_no_read(cluster: FakeCluster) -> None:
    """An operator restart resumes every resource: one that is already in step
    with its RayJob (as the index shows it) costs no request at all."""
    cluster.apply_finetune(_finetune("ft"))
    lifecycle.create(body=kopf.Body(cluster.finetune(NS, "ft")), rayjobs={})
    index = {(NS, "ft"): cluster.list_rayjobs(NS, "ft")}
    lifecycle.create(body=kopf.Body(cluster.finetune(NS, "ft")), rayjobs=index)  # RayJob seen
    cluster.calls.clear()
    lifecycle.create(body=kopf.Body(cluster.finetune(NS, "ft")), rayjobs=index)
    assert cluster.rayjob_names(NS) == ["ft-1"]
    assert not cluster.calls, cluster.calls
