{{/* Naming and labels shared by every template. */}}

{{- define "whisperft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "whisperft.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "whisperft.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades, so never add the version here. */}}
{{- define "whisperft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "whisperft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "whisperft.labels" -}}
helm.sh/chart: {{ include "whisperft.chart" . }}
app.kubernetes.io/name: {{ include "whisperft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: whisperft
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "whisperft.operatorServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-operator" (include "whisperft.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "whisperft.operatorRoleName" -}}
{{- printf "%s-operator" (include "whisperft.fullname" .) }}
{{- end }}


{{- define "whisperft.settingsName" -}}
{{- printf "%s-settings" (include "whisperft.fullname" .) }}
{{- end }}

{{/*
The namespaces served, as a JSON list (empty when cluster-wide).
"release", and "namespaces" with an empty list, serve only the namespace the
chart is installed in.
*/}}
{{- define "whisperft.watchNamespaces" -}}
{{- if eq .Values.watch.scope "all" }}
{{- list | toJson }}
{{- else if eq .Values.watch.scope "namespaces" }}
{{- .Values.watch.namespaces | default (list .Release.Namespace) | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{- define "whisperft.image" -}}
{{- $tag := default .Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}
