"""Names fixed across the project, defined once and imported everywhere else."""

from __future__ import annotations

from typing import Final

GROUP: Final = "whisperft.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "WhisperFineTune"
PLURAL: Final = "whisperfinetunes"
SINGULAR: Final = "whisperfinetune"
SHORT_NAMES: Final = ("wft",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

APP_NAME: Final = "whisperft"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_FINETUNE: Final = f"{GROUP}/finetune"
LABEL_ATTEMPT: Final = f"{GROUP}/attempt"
MANAGED_BY: Final = "whisperft-operator"
# Set on a checkpoint claim the operator released on success: why it outlives its fine-tune.
ANNOTATION_KEPT: Final = f"{GROUP}/kept"

# Environment variables through which the operator tells the trainer which
# resource to report progress to (see trainer/progress.py).
ENV_FINETUNE_NAME: Final = "WHISPERFT_FINETUNE_NAME"
ENV_FINETUNE_NAMESPACE: Final = "WHISPERFT_FINETUNE_NAMESPACE"
ENV_CONFIG_PATH: Final = "WHISPERFT_CONFIG"
# The attempt a trainer runs for; its progress reports carry it.
ENV_ATTEMPT: Final = "WHISPERFT_ATTEMPT"

# Where the rendered pods mount things; the trainer reads the same constants.
CONFIG_MOUNT_DIR: Final = "/etc/whisperft"
# The attempt's ConfigMap: the resource as admitted, and what the operator resolved for it.
FINETUNE_FILE_NAME: Final = "finetune.yaml"
RUNTIME_FILE_NAME: Final = "runtime.yaml"
CHECKPOINT_MOUNT_DIR: Final = "/checkpoints"
DATA_MOUNT_DIR: Final = "/data"
