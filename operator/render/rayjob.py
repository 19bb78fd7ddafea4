"""The RayJob (ray.io/v1) of one attempt, with its RayCluster spec inline."""

from __future__ import annotations

from typing import Any

from whisperft import names
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.resolve import Resolution
from whisperft.operator.render.meta import KUEUE_QUEUE_LABEL, Meta, object_meta, rayjob_name
from whisperft.operator.render.pods import head_template, submitter_template, worker_template
from whisperft.operator.settings import Settings

RAY_API_VERSION = "ray.io/v1"
# The pod runs the same command as a local run, on the admitted resource, with
# the operator's runtime instead of the local one.
ENTRYPOINT = (
    f"whisperft train {names.CONFIG_MOUNT_DIR}/{names.FINETUNE_FILE_NAME}"
    f" --runtime {names.CONFIG_MOUNT_DIR}/{names.RUNTIME_FILE_NAME} --ray-address auto"
)


def render_rayjob(
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, res: Resolution, attempt: int
) -> dict[str, Any]:
    md = object_meta(meta, rayjob_name(meta.name, attempt), "rayjob", attempt=attempt)
    if spec.queue_name:
        md["labels"][KUEUE_QUEUE_LABEL] = spec.queue_name
    workers = spec.resources.workers
    job_spec: dict[str, Any] = {
        "entrypoint": ENTRYPOINT,
        "submissionMode": "K8sJobMode",
        # Retries are ours (a new attempt that resumes from the checkpoint), so
        # KubeRay must not retry behind our back.
        "backoffLimit": 0,
        # Kueue refuses RayJobs that keep their cluster, and GPUs must be freed.
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "suspend": spec.suspend,
        "submitterPodTemplate": submitter_template(spec, meta, settings, attempt),
        "rayClusterSpec": {
            "rayVersion": settings.ray_version,
            "enableInTreeAutoscaling": False,
            # KubeRay makes a Secret with a random token for the cluster and sets
            # RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (from that Secret) on every Ray
            # container and the submitter: no token, no GCS, dashboard or job API.
            "authOptions": {"mode": "token"},
            "headGroupSpec": {
                # No CPUs either: no Ray Train worker (least of all rank 0, which
                # patches the status with the trainer's API token) runs on the head,
                # which has no such token. The driver and Train's controller take 0 CPUs.
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0", "num-gpus": "0"},
                "template": head_template(spec, meta, settings, res, attempt),
            },
            "workerGroupSpecs": [
                {
                    "groupName": "workers",
                    "replicas": workers,
                    "minReplicas": workers,
                    "maxReplicas": workers,
                    "rayStartParams": {},
                    "template": worker_template(spec, meta, settings, res, attempt),
                }
            ],
        },
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.startup_deadline_seconds is not None:
        job_spec["preRunningDeadlineSeconds"] = spec.startup_deadline_seconds
    return {"apiVersion": RAY_API_VERSION, "kind": "RayJob", "metadata": md, "spec": job_spec}
