"""Lifecycle vocabulary of a WhisperFineTune: phases, condition types, condition reasons."""

from __future__ import annotations

from enum import Enum


class Phase(str, Enum):
    """Where a fine-tune is in its life; the `phase` printer column."""

    PENDING = "Pending"
    """Accepted; children being created or the Ray cluster starting (or queued by Kueue)."""
    PLANNING = "Planning"
    """Checking the memory plan and node pool before any GPU is asked for."""
    RUNNING = "Running"
    """The Ray cluster is up and the training job is submitted or running."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def is_terminal(self) -> bool:
        """True when nothing more will happen without a spec change."""
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class ConditionType(str, Enum):
    """Condition types in `status.conditions`, each True/False/Unknown with reason and message."""

    PLANNED = "Planned"
    """The memory plan fits and the accelerator maps to a node pool."""
    READY = "Ready"
    """The Ray cluster of the current attempt is up."""
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    UPDATE_PENDING = "UpdatePending"
    """The spec changed in a way a running attempt cannot take live; applies at the next attempt."""


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# Fixed reasons (CamelCase, as Kubernetes conventions ask) so tests and
# Argo CD health checks can match on them.
class Reason(str, Enum):
    PLAN_FITS = "PlanFits"
    PLAN_WILL_NOT_FIT = "WillNotFit"
    UNKNOWN_ACCELERATOR = "UnknownAccelerator"
    INVALID_SPEC = "InvalidSpec"
    CLUSTER_STARTING = "ClusterStarting"
    CLUSTER_READY = "ClusterReady"
    QUEUED = "Queued"
    JOB_PENDING = "JobPending"
    JOB_RUNNING = "JobRunning"
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    CREATE_FAILED = "CreateFailed"
    """Creating the attempt's children failed (KubeRay missing, a quota, the API); retried."""
    IMAGE_PULL_FAILED = "ImagePullFailed"
    """A Ray pod's image cannot be pulled."""
    UNSCHEDULABLE = "Unschedulable"
    """The scheduler has no node for a Ray pod (its message says why)."""
    CLAIM_NOT_BOUND = "ClaimNotBound"
    """A Ray pod's claim does not exist or does not bind (access mode, storage class)."""
    POD_CONFIG_ERROR = "PodConfigError"
    """A Ray pod's container cannot be created (a missing Secret key, a bad mount)."""
    STARTUP_DEADLINE_EXCEEDED = "StartupDeadlineExceeded"
    """The pods could not start within the startup deadline; not retried."""
    CLAIM_IN_USE = "ClaimInUse"
    """The named checkpoint claim holds another fine-tune's run directory."""
    NAME_CONFLICT = "NameConflict"
    """A child's name is taken by an object this resource does not control."""
    BAD_INPUT = "BadInput"
    """The trainer exited 2: the data, the model or a value is wrong; a retry fails alike."""
    JOB_STOPPED = "JobStopped"
    JOB_STATUS_LOST = "JobStatusLost"
    DEPLOYMENT_FAILED = "DeploymentFailed"
    VALIDATION_FAILED = "ValidationFailed"
    RETRYING = "Retrying"
    RESTARTS_EXHAUSTED = "RestartsExhausted"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    NOT_SUSPENDED = "NotSuspended"
    SPEC_CHANGED = "SpecChanged"
    UP_TO_DATE = "UpToDate"
    NOT_STARTED = "NotStarted"
