{{/* The chart's name. */}}
{{- define "runway-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects. */}}
{{- define "runway-controller.fullname" -}}
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

{{/* Labels that select the controller's pods (never change them on upgrade). */}}
{{- define "runway-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runway-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "runway-controller.labels" -}}
{{ include "runway-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The controller's ServiceAccount. */}}
{{- define "runway-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runway-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: give the existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The one watched namespace, or "" for all; fails on more than one. */}}
{{- define "runway-controller.watchNamespace" -}}
{{- if gt (len .Values.watchNamespaces) 1 }}
{{- fail "watchNamespaces: the controller watches one namespace or all; give one or leave it empty" }}
{{- end }}
{{- if eq (len .Values.watchNamespaces) 1 }}
{{- first .Values.watchNamespaces }}
{{- end }}
{{- end }}

{{/*
The rules the controller needs where it serves RunnerScaleSets: exactly the
API calls in controller/src (sandbox/tests/charts.rs holds the same table).
*/}}
{{- define "runway-controller.rules" -}}
- apiGroups: ["actions.runway.dev"]
  resources: ["runnerscalesets"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["actions.runway.dev"]
  resources: ["runnerscalesets/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
