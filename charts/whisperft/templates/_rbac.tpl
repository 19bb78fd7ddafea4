{{/*
The operator's rules: exactly the verbs on exactly the resources it uses
(operator/kube.py, the Kopf handlers, and Kopf itself). Shared by the
per-namespace Roles and the cluster-wide ClusterRole so both scopes grant the
same thing. tests/unit/test_chart_rbac.py pins this list.

Kopf's peering resource only with peering.enabled: kopfpeerings in each served
namespace (clusterkopfpeerings with watch.scope "all"). Not granted, on purpose:
list/watch on namespaces and customresourcedefinitions (cluster-scoped; Kopf
then logs that it cannot notice new namespaces/CRDs at run time and uses the
namespaces it was given and the resources found at start-up, which is all a
fixed set of watched namespaces needs). Nothing on secrets, and on pods only
list/watch (to say why they do not start); KubeRay, not us, manages them.
*/}}
{{- define "whisperft.operatorRules" -}}
# The watched resource: Kopf lists and watches it, and patches it to keep its
# finalizer and handler progress (annotations under whisperft.io/); the
# reconcile reads it afresh before it creates, deletes or suspends anything.
- apiGroups: ["whisperft.io"]
  resources: ["whisperfinetunes"]
  verbs: ["get", "list", "watch", "patch"]
# Phase, conditions, attempt, child names; also the one right each
# fine-tune's trainer Role grants (RBAC lets nobody grant what they do not hold).
- apiGroups: ["whisperft.io"]
  resources: ["whisperfinetunes/status"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin only allows with this.
- apiGroups: ["whisperft.io"]
  resources: ["whisperfinetunes/finalizers"]
  verbs: ["update"]
# One RayJob per attempt: created (or found), indexed by a watch for status,
# patched to suspend or resume, deleted to free the GPUs.
- apiGroups: ["ray.io"]
  resources: ["rayjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children created once per fine-tune or attempt and removed by the garbage
# collector through their owner references: the trainer's TrainConfig, the
# checkpoint claim, and the training pods' identity (a ServiceAccount and a
# Role allowing patch on that one resource's status, bound to it).
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "create"]
# The claim too; patched once, when a run succeeds with its model only there, to
# drop the fine-tune's owner reference so deleting the fine-tune keeps the model.
# `delete` is never requested: the OwnerReferencesPermissionEnforcement admission
# plugin requires it of whoever changes an object's owner references.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create"]
# Each attempt's NetworkPolicies fencing its Ray pods (operator/render/network.py),
# created before its RayJob and removed with the rest by their owner references.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create"]
# Read-only: why the Ray pods do not start (image pull, scheduling, claims),
# copied into the fine-tune's conditions. Kopf indexes our pods by label.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events for every transition (Kopf posts core/v1 Events).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.peering.enabled }}
# Peered replicas (peering.enabled): list and watch the peering object to see
# the other replicas, patch its status with this replica's keep-alive.
- apiGroups: ["kopf.dev"]
  resources: [{{ ternary "clusterkopfpeerings" "kopfpeerings" (eq .Values.watch.scope "all") | quote }}]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}
