{{/* The prefix of the release's object names: `<release>-gha-rs` as in ARC. */}}
{{- define "runway-scale-set.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-gha-rs" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The namespace of every object: namespaceOverride or the release's. */}}
{{- define "runway-scale-set.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/*
The scale set's name (runs-on and the RunnerScaleSet object's name):
runnerScaleSetName or the release name. Refuses more than 45 characters
(GitHub's limit; the schema says it too).
*/}}
{{- define "runway-scale-set.scaleSetName" -}}
{{- $name := default .Release.Name .Values.runnerScaleSetName }}
{{- if gt (len $name) 45 }}
{{- fail (printf "runnerScaleSetName %q is %d characters long; GitHub allows at most 45 (it defaults to the release name)" $name (len $name)) }}
{{- end }}
{{- $name }}
{{- end }}

{{/* Labels the chart owns on every object (users' labels never override them). */}}
{{- define "runway-scale-set.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: runway
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
actions.runway.dev/scale-set: {{ include "runway-scale-set.scaleSetName" . | quote }}
{{- end }}

{{/*
An object's metadata labels and annotations, ARC's order: the global
`labels`/`annotations`, then `resourceMeta.<key>`, then the chart's own
labels, which win. User labels under `actions.runway.dev/` are dropped.
Call with (dict "root" $ "key" "autoscalingRunnerSet").
*/}}
{{- define "runway-scale-set.meta" -}}
{{- $root := .root }}
{{- $meta := dict }}
{{- if and $root.Values.resourceMeta (hasKey $root.Values.resourceMeta .key) }}
{{- $meta = get $root.Values.resourceMeta .key | default dict }}
{{- end }}
{{- $labels := dict }}
{{- range $k, $v := ($root.Values.labels | default dict) }}
{{- if not (hasPrefix "actions.runway.dev/" $k) }}
{{- $_ := set $labels $k (include "runway-scale-set.string" $v) }}
{{- end }}
{{- end }}
{{- range $k, $v := ($meta.labels | default dict) }}
{{- if not (hasPrefix "actions.runway.dev/" $k) }}
{{- $_ := set $labels $k (include "runway-scale-set.string" $v) }}
{{- end }}
{{- end }}
{{- range $k, $v := (include "runway-scale-set.labels" $root | fromYaml) }}
{{- $_ := set $labels $k ($v | toString) }}
{{- end }}
{{- $annotations := dict }}
{{- range $k, $v := ($root.Values.annotations | default dict) }}
{{- $_ := set $annotations $k (include "runway-scale-set.string" $v) }}
{{- end }}
{{- range $k, $v := ($meta.annotations | default dict) }}
{{- $_ := set $annotations $k (include "runway-scale-set.string" $v) }}
{{- end }}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Whether githubConfigSecret names an existing Secret ("true" or ""). */}}
{{- define "runway-scale-set.existingSecret" -}}
{{- if kindIs "string" .Values.githubConfigSecret }}true{{ end }}
{{- end }}

{{/*
The RunnerScaleSet's containerMode.type: "dind" or "" (none). As in ARC,
"" and "none" mean none and any other unknown type renders as none (NOTES
warns). ARC's kubernetes modes are refused: Runway has no container hooks.
*/}}
{{- define "runway-scale-set.containerMode" -}}
{{- $type := "" }}
{{- with .Values.containerMode }}
{{- $type = .type | default "" | toString }}
{{- end }}
{{- if or (eq $type "kubernetes") (eq $type "kubernetes-novolume") }}
{{- fail (printf "containerMode.type %s is not supported by Runway (it has no container hooks); use dind to run job containers, or leave containerMode.type empty" $type) }}
{{- end }}
{{- if eq $type "dind" }}dind{{ end }}
{{- end }}

{{/*
ARC's githubServerTLS.runnerMountPath, done as ARC does it: the CA of
certificateFrom.configMapKeyRef as volume `github-server-tls-cert`, mounted
in the `runner` container at <runnerMountPath>/<key>, with
NODE_EXTRA_CA_CERTS at that path and RUNNER_UPDATE_CA_CERTS=1; a volume,
mount or env entry of the same name in the template wins. Changes the
template (a copy) in place. Call with (dict "tls" githubServerTLS "template" $template).
*/}}
{{- define "runway-scale-set.runnerCA" -}}
{{- $ref := dict }}
{{- with .tls.certificateFrom }}{{ $ref = .configMapKeyRef | default dict }}{{ end }}
{{- if not (and $ref.name $ref.key) }}
{{- fail "githubServerTLS.runnerMountPath needs githubServerTLS.certificateFrom.configMapKeyRef (name and key): the CA to mount in the runner container" }}
{{- end }}
{{- $path := clean (print .tls.runnerMountPath "/" $ref.key) }}
{{- $spec := .template.spec }}
{{- $volume := dict "name" "github-server-tls-cert" "configMap" (dict "name" $ref.name "items" (list (dict "key" $ref.key "path" $ref.key))) }}
{{- $_ := set $spec "volumes" (include "runway-scale-set.mergeByName" (dict "items" $spec.volumes "extra" (list $volume)) | fromYamlArray) }}
{{- range $spec.containers }}
{{- if eq .name "runner" }}
{{- $mount := dict "name" "github-server-tls-cert" "mountPath" $path "subPath" $ref.key }}
{{- $_ := set . "volumeMounts" (include "runway-scale-set.mergeByName" (dict "items" .volumeMounts "extra" (list $mount)) | fromYamlArray) }}
{{- $env := list (dict "name" "NODE_EXTRA_CA_CERTS" "value" $path) (dict "name" "RUNNER_UPDATE_CA_CERTS" "value" "1") }}
{{- $_ := set . "env" (include "runway-scale-set.mergeByName" (dict "items" .env "extra" $env) | fromYamlArray) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
minRunners or maxRunners as a whole number, or "" when unset. A quoted
number ("5", which ARC silently drops) counts; other text is refused.
Call with (dict "key" "maxRunners" "value" .Values.maxRunners).
*/}}
{{- define "runway-scale-set.runnerCount" -}}
{{- if kindIs "string" .value }}
{{- if not (regexMatch "^[0-9]{1,9}$" .value) }}
{{- fail (printf "%s %q is not a whole number of runners; write a number, e.g. %s: 5" .key .value .key) }}
{{- end }}
{{- end }}
{{- if not (kindIs "invalid" .value) }}{{ int64 .value }}{{ end }}
{{- end }}

{{/* The name of the GitHub credentials Secret the RunnerScaleSet refers to. */}}
{{- define "runway-scale-set.githubSecretName" -}}
{{- if include "runway-scale-set.existingSecret" . }}
{{- required "githubConfigSecret: give the name of an existing Secret, or the credentials (github_token, or github_app_id, github_app_installation_id and github_app_private_key)" .Values.githubConfigSecret }}
{{- else }}
{{- printf "%s-github-secret" (include "runway-scale-set.fullname" .) }}
{{- end }}
{{- end }}

{{/* The runners' ServiceAccount name, or "" for the namespace's default. */}}
{{- define "runway-scale-set.serviceAccountName" -}}
{{- $sa := .Values.serviceAccount | default dict }}
{{- $templateSA := "" }}
{{- if and .Values.template .Values.template.spec }}
{{- $templateSA = .Values.template.spec.serviceAccountName | default "" }}
{{- end }}
{{- if $sa.name }}
{{- $sa.name }}
{{- else if $templateSA }}
{{- $templateSA }}
{{- else if $sa.create }}
{{- printf "%s-runner" (include "runway-scale-set.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Whether the chart creates the runners' ServiceAccount ("true" or ""): with
serviceAccount.create, unless an ARC template names an existing one and
serviceAccount.name is not given. Annotations on a ServiceAccount the chart
does not create would be lost, so they are refused.
*/}}
{{- define "runway-scale-set.createServiceAccount" -}}
{{- $sa := .Values.serviceAccount | default dict }}
{{- $templateSA := "" }}
{{- if and .Values.template .Values.template.spec }}
{{- $templateSA = .Values.template.spec.serviceAccountName | default "" }}
{{- end }}
{{- $create := and $sa.create (or $sa.name (not $templateSA)) }}
{{- if and (not $create) $sa.annotations }}
{{- if $templateSA }}
{{- fail (printf "serviceAccount.annotations: the chart creates no ServiceAccount because template.spec.serviceAccountName names the existing %q; annotate that one, or set serviceAccount.name to have the chart create it" $templateSA) }}
{{- else }}
{{- fail "serviceAccount.annotations: the chart creates no ServiceAccount because serviceAccount.create is false; annotate your own ServiceAccount instead" }}
{{- end }}
{{- end }}
{{- if $create }}true{{ end }}
{{- end }}

{{/* A value as a string; whole numbers without an exponent (IDs written unquoted). */}}
{{- define "runway-scale-set.string" -}}
{{- if kindIs "float64" . }}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}
