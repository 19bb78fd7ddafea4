{{/*
The operator's rules: exactly the verbs on exactly the resources it uses.
Shared by the per-namespace Roles and the cluster-wide ClusterRole so both
modes grant the same thing. tests/unit/test_chart_rbac.py pins this list.
*/}}
{{- define "whisperft.operatorRules" -}}
# The watched resource: Kopf lists and watches it, and patches it to store its
# finalizer and per-handler progress (annotations under whisperft.io).
- apiGroups: ["whisperft.io"]
  resources: ["whisperfinetunes"]
  verbs: ["get", "list", "watch", "patch"]
# phase, conditions, attempt, child names (the trainer owns status.progress).
- apiGroups: ["whisperft.io"]
  resources: ["whisperfinetunes/status"]
  verbs: ["get", "patch"]
# Children carry ownerReferences with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin only allows with this.
- apiGroups: ["whisperft.io"]
  resources: ["whisperfinetunes/finalizers"]
  verbs: ["update"]
# One RayJob per attempt: created, watched for status, patched to suspend or
# resume, deleted when a failed attempt is replaced.
- apiGroups: ["ray.io"]
  resources: ["rayjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Read-only: the RayCluster a RayJob created (head pod readiness, dashboard).
- apiGroups: ["ray.io"]
  resources: ["rayclusters"]
  verbs: ["get", "list", "watch"]
# The trainer's TrainConfig per attempt.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The generated checkpoint claim; patched to drop its owner reference when the
# resource asks to keep it; a user's own claim is only read.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Kopf and the handlers post core/v1 Events for every transition.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Per fine-tune, the training pods' identity: a ServiceAccount and a Role
# (get + patch on that one resource's status) bound to it. Creating that Role
# is allowed because the operator holds the same rights on whisperfinetunes/status.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch"]
{{- end }}
