{{/*
How many operator pods run: replicaCount, or (null) 2 with peering, 1 without.
More than one without peering is refused: unpeered replicas would all act.
*/}}
{{- define "whisperft.replicas" -}}
{{- $n := .Values.replicaCount }}
{{- if kindIs "invalid" $n }}
{{- $n = ternary 2 1 .Values.peering.enabled }}
{{- end }}
{{- if and (gt (int $n) 1) (not .Values.peering.enabled) }}
{{- fail "replicaCount > 1 needs peering.enabled=true: unpeered replicas would all act on every WhisperFineTune" }}
{{- end }}
{{- int $n }}
{{- end }}

{{/*
The Kopf peering object's name (one per served namespace, or one
ClusterKopfPeering with watch.scope "all"): release-specific, so two releases
never pause each other.
*/}}
{{- define "whisperft.peeringName" -}}
{{- printf "%s-%s" (include "whisperft.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}
