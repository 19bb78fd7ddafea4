"""Scenario 13: the chart's ValidatingAdmissionPolicies on the real API server.

`helm install` of the chart with its defaults (the policies are on by default),
then:

(a) as the operator's ServiceAccount (a TokenRequest token, what a stolen token
    of the operator pod could do): a RayJob exactly as `whisperft render`
    renders it is admitted; the same RayJob with a hostPath volume, a
    privileged container, privilege escalation, an added capability, a host
    namespace, a foreign image or a foreign ServiceAccount is refused with a
    message naming the field. The same bad RayJob from anyone else is not the
    policy's business (cluster admin: admitted).
(b) as a user who may create whisperfinetunes but not get Secrets, a fine-tune
    naming a Secret is refused; with a Role granting get on that Secret by name
    it is admitted; someone without Secret rights may still update the
    fine-tune (the operator patches finalizers) as long as the Secret it names
    stays the same, but may not point it at another Secret.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube
from e2e_harness.resources import CHART, EXAMPLES, dump, finetune

from whisperft import names

pytestmark = [pytest.mark.e2e]

RELEASE = "adm"
NAMESPACE = "admission-policies"
OPERATOR_SA = f"{RELEASE}-whisperft-operator"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@dataclass
class Installed:
    cluster: ControlPlane
    ns: str
    operator_kubeconfig: Path
    workdir: Path

    def kubectl_as(
        self, kubeconfig: Path, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """kubectl authenticated by `kubeconfig` only (not the admin's)."""
        return subprocess.run(
            [str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.cluster.env(),
            timeout=60,
        )


@pytest.fixture(scope="module")
def installed(
    cluster: ControlPlane, kube: Kube, wft_crd: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    ns = kube.namespace(NAMESPACE, labels=RESTRICTED)
    tmp = tmp_path_factory.mktemp("admission")
    cluster.helm("install", RELEASE, str(CHART), "-n", ns, "--wait=false", timeout=180)
    try:
        kc = cluster.service_account_kubeconfig(ns, OPERATOR_SA, tmp / "operator.kubeconfig")
        yield Installed(cluster, ns, kc, tmp)
    finally:
        cluster.helm("uninstall", RELEASE, "-n", ns, check=False, timeout=120)
        kube.delete_namespace(ns)


def _policies(cluster: ControlPlane) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "validatingadmissionpolicies", "-l", f"app.kubernetes.io/instance={RELEASE}",
        "-o", "json",
    )  # fmt: skip
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def _rendered_rayjob(ns: str) -> dict[str, Any]:
    """The RayJob `whisperft render` makes of the minimal example (the chart's
    default trainer image, the same one the installed policy allows)."""
    out = subprocess.run(
        [sys.executable, "-m", "whisperft", "render", str(EXAMPLES / "minimal.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (job,) = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "RayJob"]
    job["metadata"]["namespace"] = ns
    return dict(job)


def _head(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    return spec


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    return spec


def _submitter(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["submitterPodTemplate"]["spec"]
    return spec


def _host_path(job: dict[str, Any]) -> None:
    _worker(job)["volumes"].append({"name": "host-root", "hostPath": {"path": "/"}})


def _secret_volume(job: dict[str, Any]) -> None:
    _head(job)["volumes"].append({"name": "creds", "secret": {"secretName": "anything"}})


def _privileged(job: dict[str, Any]) -> None:
    _head(job)["containers"][0]["securityContext"]["privileged"] = True


def _escalation(job: dict[str, Any]) -> None:
    _worker(job)["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True


def _capability(job: dict[str, Any]) -> None:
    _worker(job)["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]


def _host_network(job: dict[str, Any]) -> None:
    _worker(job)["hostNetwork"] = True


def _host_pid(job: dict[str, Any]) -> None:
    _head(job)["hostPID"] = True


def _foreign_image(job: dict[str, Any]) -> None:
    _worker(job)["containers"][0]["image"] = "docker.io/attacker/miner:latest"


def _lookalike_image(job: dict[str, Any]) -> None:
    # Same repository string as a prefix, another repository by path segments.
    _worker(job)["containers"][0]["image"] = "ghcr.io/whisperft/trainer-evil:0.1.0"


def _init_container_image(job: dict[str, Any]) -> None:
    init = copy.deepcopy(_head(job)["containers"][0])
    init.update(name="sneaky", image="docker.io/attacker/tool:1")
    _head(job)["initContainers"] = [init]


def _foreign_account(job: dict[str, Any]) -> None:
    _head(job)["serviceAccountName"] = "default"


def _other_finetunes_account(job: dict[str, Any]) -> None:
    _worker(job)["serviceAccountName"] = "someone-else-trainer"


def _submitter_account(job: dict[str, Any]) -> None:
    _submitter(job)["serviceAccountName"] = "minimal-trainer"


def _submitter_token(job: dict[str, Any]) -> None:
    _submitter(job)["automountServiceAccountToken"] = True


def _no_cluster(job: dict[str, Any]) -> None:
    del job["spec"]["rayClusterSpec"]
    job["spec"]["clusterSelector"] = {"ray.io/cluster": "someone-elses"}


BAD: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "hostPath volume": (_host_path, ("workerGroupSpecs[workers].template.spec.volumes[host-root]", "hostPath volume not allowed")),
    "secret volume": (_secret_volume, ("headGroupSpec.template.spec.volumes[creds]", "secret volume not allowed")),
    "privileged": (_privileged, ("containers[ray-head].securityContext", "privileged: true not allowed")),
    "allowPrivilegeEscalation": (_escalation, ("containers[ray-worker].securityContext", "allowPrivilegeEscalation: true")),
    "added capability": (_capability, ("containers[ray-worker].securityContext", "capabilities.add not allowed")),
    "hostNetwork": (_host_network, ("workerGroupSpecs[workers].template.spec", "hostNetwork not allowed")),
    "hostPID": (_host_pid, ("headGroupSpec.template.spec", "hostPID not allowed")),
    "foreign image": (_foreign_image, ("containers[ray-worker].image", "'docker.io/attacker/miner:latest' is not the installed trainer image")),
    "look-alike image": (_lookalike_image, ("containers[ray-worker].image", "trainer-evil")),
    "init container image": (_init_container_image, ("initContainers[sneaky].image", "docker.io/attacker/tool:1")),
    "foreign ServiceAccount": (_foreign_account, ("headGroupSpec.template.spec.serviceAccountName", "'default' is not the fine-tune's trainer ServiceAccount")),
    "another fine-tune's ServiceAccount": (_other_finetunes_account, ("serviceAccountName: 'someone-else-trainer'",)),
    "submitter ServiceAccount": (_submitter_account, ("spec.submitterPodTemplate.spec", "no serviceAccountName")),
    "submitter token": (_submitter_token, ("spec.submitterPodTemplate.spec", "automountServiceAccountToken: false")),
    "no rayClusterSpec": (_no_cluster, ("spec.rayClusterSpec is missing",)),
}  # fmt: skip


def _create_dry_run(
    inst: Installed, kubeconfig: Path, obj: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return inst.kubectl_as(
        kubeconfig, "create", "--dry-run=server", "-n", inst.ns, "-f", "-", input=dump(obj)
    )


def test_policies_are_installed_and_type_check_clean(installed: Installed) -> None:
    policies = _policies(installed.cluster)
    assert sorted(p["metadata"]["name"] for p in policies) == [
        f"{RELEASE}-whisperft-{NAMESPACE}-rayjobs",
        f"{RELEASE}-whisperft-{NAMESPACE}-secretrefs",
    ]

    def checked() -> list[dict[str, Any]] | None:
        got = _policies(installed.cluster)
        done = all(
            p.get("status", {}).get("observedGeneration") == p["metadata"]["generation"]
            for p in got
        )
        return got if done else None

    for p in _wait(installed, "policies type-checked", checked):
        status = p.get("status", {})
        warnings = (status.get("typeChecking") or {}).get("expressionWarnings") or []
        assert not warnings, f"{p['metadata']['name']}: type-check warnings {warnings}"
        failed = [c for c in status.get("conditions") or [] if c.get("status") != "True"]
        assert not failed, f"{p['metadata']['name']}: {failed}"


def _wait(inst: Installed, what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    box: list[Any] = []

    def check() -> bool:
        got = probe()
        if got:
            box.append(got)
        return bool(got)

    inst.cluster.wait_until(what, check, timeout=timeout, interval=0.5)
    return box[-1]


def test_operator_account_gets_rayjobs_only_in_the_rendered_shape(installed: Installed) -> None:
    job = _rendered_rayjob(installed.ns)
    kc = installed.operator_kubeconfig

    # Bindings take effect asynchronously: wait until a bad RayJob is refused.
    hostpath = copy.deepcopy(job)
    _host_path(hostpath)
    _wait(
        installed,
        "the RayJob policy enforced",
        lambda: _create_dry_run(installed, kc, hostpath).returncode != 0,
    )

    ok = _create_dry_run(installed, kc, job)
    assert ok.returncode == 0, f"the RayJob as rendered was refused:\n{ok.stderr}"

    for what, (mutate, expected) in BAD.items():
        bad = copy.deepcopy(job)
        mutate(bad)
        out = _create_dry_run(installed, kc, bad)
        assert out.returncode != 0, f"{what}: admitted from the operator's ServiceAccount"
        assert "ValidatingAdmissionPolicy" in out.stderr, f"{what}: {out.stderr}"
        for text in expected:
            assert text in out.stderr, f"{what}: {text!r} not in the refusal:\n{out.stderr}"

    # The policy is about the operator's token only: the cluster admin (who may
    # create any pod anyway) is not matched.
    admin = _create_dry_run(installed, installed.cluster.kubeconfig, hostpath)
    assert admin.returncode == 0, admin.stderr


def _user(inst: Installed, name: str, rules: list[dict[str, Any]]) -> Path:
    """A ServiceAccount with a Role of `rules` in the namespace; its kubeconfig."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": inst.ns},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": inst.ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": inst.ns}],
    }
    inst.cluster.kubectl("create", "serviceaccount", name, "-n", inst.ns)
    inst.cluster.kubectl("apply", "-f", "-", input=dump(role, binding))
    return inst.cluster.service_account_kubeconfig(
        inst.ns, name, inst.workdir / f"{name}.kubeconfig"
    )


FINETUNES = {
    "apiGroups": [names.GROUP],
    "resources": [names.PLURAL],
    "verbs": ["create", "get", "patch"],
}


def test_a_finetune_names_only_secrets_its_author_may_read(
    installed: Installed, kube: Kube
) -> None:
    ns = installed.ns
    for secret in ("hf-token", "someone-elses-token"):
        installed.cluster.kubectl(
            "create", "secret", "generic", secret, "-n", ns, "--from-literal=token=hf_x"
        )
    alice = _user(installed, "alice", [FINETUNES])
    wft = finetune("with-token", hfTokenSecretRef={"name": "hf-token"})
    wft["metadata"]["namespace"] = ns

    def refused() -> bool:
        return _create_dry_run(installed, alice, wft).returncode != 0

    _wait(installed, "the secretRefs policy enforced", refused)
    out = _create_dry_run(installed, alice, wft)
    assert "spec.hfTokenSecretRef.name" in out.stderr, out.stderr
    assert f"system:serviceaccount:{ns}:alice may not get Secret 'hf-token'" in out.stderr, (
        out.stderr
    )

    # No Secret at all: a fine-tune without a reference needs no Secret rights.
    plain = finetune("no-token")
    plain["metadata"]["namespace"] = ns
    out = _create_dry_run(installed, alice, plain)
    assert out.returncode == 0, out.stderr

    # get on that one Secret by name (what the platform grants to mark it usable).
    installed.cluster.kubectl(
        "apply", "-f", "-",
        input=dump({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "alice", "namespace": ns},
            "rules": [FINETUNES, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["hf-token"]}],
        }),
    )  # fmt: skip
    _wait(
        installed,
        "alice's get on hf-token in effect",
        lambda: _create_dry_run(installed, alice, wft).returncode == 0,
    )
    created = installed.kubectl_as(alice, "create", "-n", ns, "-f", "-", input=dump(wft))
    assert created.returncode == 0, created.stderr

    # Another Secret is still out of reach, for a new fine-tune or by changing this one.
    other = finetune("other-token", hfTokenSecretRef={"name": "someone-elses-token"})
    other["metadata"]["namespace"] = ns
    out = _create_dry_run(installed, alice, other)
    assert out.returncode != 0 and "'someone-elses-token'" in out.stderr, out.stderr
    out = installed.kubectl_as(
        alice, "patch", "wft", "with-token", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"hfTokenSecretRef": {"name": "someone-elses-token"}}}),
    )  # fmt: skip
    assert out.returncode != 0 and "spec.hfTokenSecretRef.name" in out.stderr, out.stderr

    # Updates that keep the Secret are not re-checked: bob (like the operator)
    # has no Secret rights and may still patch the fine-tune's metadata.
    bob = _user(installed, "bob", [FINETUNES])
    out = installed.kubectl_as(
        bob, "patch", "wft", "with-token", "-n", ns, "--type=merge",
        "-p", json.dumps({"metadata": {"labels": {"team": "speech"}}}),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = kube.wft(ns, "with-token")
    assert got is not None and got["metadata"]["labels"]["team"] == "speech"
    assert got["spec"]["hfTokenSecretRef"]["name"] == "hf-token"


def test_allowed_images_and_required_digest_come_from_the_chart_values(
    installed: Installed,
) -> None:
    """trainer.allowedImages admits repositories by whole path segments;
    trainer.requireDigest then wants every other image pinned by digest. The
    installed trainer image itself stays admitted (a fine-tune without spec.image)."""
    installed.cluster.helm(
        "upgrade", RELEASE, str(CHART), "-n", installed.ns, "--reuse-values",
        "--set", "trainer.allowedImages={registry.corp/ml/}",
        "--set", "trainer.requireDigest=true",
        timeout=180,
    )  # fmt: skip
    job = _rendered_rayjob(installed.ns)
    kc = installed.operator_kubeconfig
    digest = "@sha256:" + "a" * 64

    def with_image(image: str) -> dict[str, Any]:
        out = copy.deepcopy(job)
        for pod in (_head(out), _worker(out), _submitter(out)):
            pod["containers"][0]["image"] = image
        return out

    _wait(
        installed,
        "the upgraded RayJob policy enforced",
        lambda: _create_dry_run(installed, kc, with_image(f"registry.corp/ml/whisper{digest}")).returncode == 0,
    )  # fmt: skip
    out = _create_dry_run(installed, kc, with_image("registry.corp/ml/team/whisper" + digest))
    assert out.returncode == 0, out.stderr
    out = _create_dry_run(installed, kc, job)
    assert out.returncode == 0, f"the installed trainer image was refused:\n{out.stderr}"
    for image, why in (
        ("registry.corp/ml/whisper:1", "pinned by digest"),
        ("registry.corp/ml-evil/whisper" + digest, "nor under an allowed repository (registry.corp/ml)"),
        ("ghcr.io/whisperft/trainer" + digest, "registry.corp/ml"),
    ):  # fmt: skip
        out = _create_dry_run(installed, kc, with_image(image))
        assert out.returncode != 0, f"{image}: admitted"
        assert f"containers[ray-worker].image: '{image}'" in out.stderr, out.stderr
        assert why in out.stderr, out.stderr
