{{/*
Kubernetes actions (KUBE-ACTIONS.md): `kubernetesActions` is both the
allowlist `runway kube` reads and the source of the least-privilege RBAC of
the runners' ServiceAccount. The (resource, verb) -> RBAC table below is the
chart's copy of runner-image/agent/src/kube/rbac.rs (resources from
catalog.rs); runner-image/agent/tests/chart_rbac.rs renders every pair and
checks that the two agree, so change both together.

Invariants: nothing here renders unless kubernetesActions lists a resource
(the default render is unchanged); input the table does not know fails the
render with a message naming the key to fix; output is sorted so that a
render is reproducible.
*/}}

{{/*
The catalog: `kubernetesActions` key -> API group, plural, scope and the
verbs beyond get/list/create/update/patch/delete/deleteMultiple.
customObjects has no location: its RBAC is kubernetesPermissions.
*/}}
{{- define "runway-scale-set.kubeActions.catalog" -}}
configMaps: {group: "", plural: configmaps, namespaced: true}
controllerRevisions: {group: apps, plural: controllerrevisions, namespaced: true}
cronJobs: {group: batch, plural: cronjobs, namespaced: true, extra: [trigger]}
customObjects: {custom: true}
customResourceDefinitions: {group: apiextensions.k8s.io, plural: customresourcedefinitions, namespaced: false}
daemonSets: {group: apps, plural: daemonsets, namespaced: true, extra: [restart, rolloutStatus]}
deployments: {group: apps, plural: deployments, namespaced: true, extra: [restart, scale, rollback, rolloutStatus]}
endpoints: {group: "", plural: endpoints, namespaced: true}
events: {group: "", plural: events, namespaced: true}
jobs: {group: batch, plural: jobs, namespaced: true}
limitRanges: {group: "", plural: limitranges, namespaced: true}
namespaces: {group: "", plural: namespaces, namespaced: false}
nodes: {group: "", plural: nodes, namespaced: false, extra: [cordon, uncordon, drain]}
persistentVolumeClaims: {group: "", plural: persistentvolumeclaims, namespaced: true}
persistentVolumes: {group: "", plural: persistentvolumes, namespaced: false}
podTemplates: {group: "", plural: podtemplates, namespaced: true}
pods: {group: "", plural: pods, namespaced: true, extra: [logs]}
replicaSets: {group: apps, plural: replicasets, namespaced: true, extra: [scale]}
replicationControllers: {group: "", plural: replicationcontrollers, namespaced: true}
resourceQuotas: {group: "", plural: resourcequotas, namespaced: true}
secrets: {group: "", plural: secrets, namespaced: true, extra: [getData]}
serviceAccounts: {group: "", plural: serviceaccounts, namespaced: true}
services: {group: "", plural: services, namespaced: true}
statefulSets: {group: apps, plural: statefulsets, namespaced: true, extra: [restart, scale, rolloutStatus]}
{{- end }}

{{/* Every verb, in the catalog's order (error messages list them so). */}}
{{- define "runway-scale-set.kubeActions.allVerbs" -}}
[get, getData, list, create, update, patch, delete, deleteMultiple, restart, scale, rollback, rolloutStatus, cordon, uncordon, drain, trigger, logs]
{{- end }}

{{/* The verbs a catalog entry supports, in catalog order, as a YAML list. */}}
{{- define "runway-scale-set.kubeActions.supported" -}}
{{- $base := list "get" "list" "create" "update" "patch" "delete" "deleteMultiple" }}
{{- $extra := .extra | default list }}
{{- $out := list }}
{{- range (include "runway-scale-set.kubeActions.allVerbs" . | fromYamlArray) }}
{{- if or (has . $base) (has . $extra) }}{{ $out = append $out . }}{{ end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The RBAC one (resource, verb) needs, as "group|resource|verb|scope" lines
(scope `cluster` for rules on cluster-scoped resources, else `ns`). The
table of rbac.rs. Call with (dict "loc" <catalog entry> "verb" "get").
*/}}
{{- define "runway-scale-set.kubeActions.verbRules" -}}
{{- $g := .loc.group | default "" }}
{{- $p := .loc.plural }}
{{- $s := ternary "ns" "cluster" .loc.namespaced }}
{{- $v := .verb }}
{{- $own := list }}
{{- $more := list }}
{{- if has $v (list "get" "getData" "rolloutStatus") }}
{{- $own = list "get" }}
{{- else if eq $v "list" }}
{{- $own = list "list" "watch" }}
{{- else if has $v (list "create" "update" "patch" "delete") }}
{{- $own = list $v }}
{{- else if eq $v "deleteMultiple" }}
{{- $own = list "deletecollection" }}
{{- else if has $v (list "restart" "cordon" "uncordon") }}
{{- $own = list "get" "patch" }}
{{- else if eq $v "scale" }}
{{- $own = list "get" "patch" }}
{{- $more = list (printf "%s|%s/scale|get|%s" $g $p $s) (printf "%s|%s/scale|patch|%s" $g $p $s) }}
{{- else if eq $v "rollback" }}
{{- $own = list "get" "patch" }}
{{- $more = list "apps|replicasets|list|ns" }}
{{- else if eq $v "drain" }}
{{- $own = list "get" "patch" }}
{{- $more = list "|pods|list|ns" "|pods/eviction|create|ns" }}
{{- else if eq $v "trigger" }}
{{- $own = list "get" }}
{{- $more = list "batch|jobs|create|ns" }}
{{- else if eq $v "logs" }}
{{- $more = list "|pods/log|get|ns" }}
{{- end }}
{{- $out := list }}
{{- range $own }}
{{- $out = append $out (printf "%s|%s|%s|%s" $g $p . $s) }}
{{- end }}
{{- toYaml (concat $out $more) }}
{{- end }}

{{/* Permission lines -> RBAC rules, one per (apiGroup, resource), verbs sorted. */}}
{{- define "runway-scale-set.kubeActions.rules" -}}
{{- $byResource := dict }}
{{- range . }}
{{- $f := splitList "|" . }}
{{- /* A space sorts before any character of a group or resource name. */}}
{{- $key := printf "%s %s" (index $f 0) (index $f 1) }}
{{- $_ := set $byResource $key (append (get $byResource $key | default list) (index $f 2)) }}
{{- end }}
{{- $rules := list }}
{{- range (keys $byResource | sortAlpha) }}
{{- $f := splitList " " . }}
{{- $rules = append $rules (dict "apiGroups" (list (index $f 0)) "resources" (list (index $f 1)) "verbs" (get $byResource . | uniq | sortAlpha)) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/* Whether kubernetesActions lists any resource ("true" or ""). */}}
{{- define "runway-scale-set.kubeActions.enabled" -}}
{{- $any := false }}
{{- range $k, $_ := (.Values.kubernetesActions | default dict) }}
{{- if ne $k "server" }}{{ $any = true }}{{ end }}
{{- end }}
{{- if $any }}true{{ end }}
{{- end }}

{{/* kubernetesActions.server, or an empty dict. */}}
{{- define "runway-scale-set.kubeActions.server" -}}
{{- $ka := .Values.kubernetesActions | default dict }}
{{- toYaml ($ka.server | default dict) }}
{{- end }}

{{/*
Everything the kube-actions templates render from, checked, as YAML:
  actions:        resource -> verbs (deduplicated, in the user's order)
  namespaces:     the allowlist's namespaces
  protected:      kubernetesActionsProtectedNamespaces
  roleType:       Role or ClusterRole
  roleNamespaces: where the Role(s) / RoleBindings go (empty: one ClusterRoleBinding)
  rules:          the actions' rules (+ audit, + kubernetesPermissions)
  clusterRules:   ClusterRole with listed namespaces only: the rules on
                  cluster-scoped resources, bound cluster-wide
  serviceAccount: the runners' ServiceAccount
Fails, naming the key, on what the table does not know.
*/}}
{{- define "runway-scale-set.kubeActions.plan" -}}
{{- $ns := include "runway-scale-set.namespace" . }}
{{- $catalog := include "runway-scale-set.kubeActions.catalog" . | fromYaml }}
{{- $roleType := .Values.roleType | default "Role" }}
{{- if not (has $roleType (list "Role" "ClusterRole")) }}
{{- fail (printf "roleType: %q is neither Role nor ClusterRole" $roleType) }}
{{- end }}
{{- $sa := include "runway-scale-set.serviceAccountName" . }}
{{- if not $sa }}
{{- fail "kubernetesActions: the runners have no ServiceAccount of their own to grant the actions to; set serviceAccount.create (or serviceAccount.name), rather than granting them to the namespace's default ServiceAccount" }}
{{- end }}
{{- $actions := dict }}
{{- $perms := list "|events|create|ns" }}
{{- $clusterScoped := list }}
{{- range $resource, $verbs := .Values.kubernetesActions }}
{{- if ne $resource "server" }}
{{- if not (hasKey $catalog $resource) }}
{{- fail (printf "kubernetesActions.%s: unknown resource; known: %s" $resource (keys $catalog | sortAlpha | join ", ")) }}
{{- end }}
{{- $loc := get $catalog $resource }}
{{- $supported := include "runway-scale-set.kubeActions.supported" $loc | fromYamlArray }}
{{- $kept := list }}
{{- range ($verbs | default list) }}
{{- if not (has . $supported) }}
{{- fail (printf "kubernetesActions.%s: %s have no `%s` action; supported: %s" $resource $resource (toString .) (join ", " $supported)) }}
{{- end }}
{{- $kept = append $kept . }}
{{- end }}
{{- $_ := set $actions $resource ($kept | uniq) }}
{{- if not $loc.custom }}
{{- if not $loc.namespaced }}
{{- $clusterScoped = append $clusterScoped $resource }}
{{- end }}
{{- range $kept }}
{{- $perms = concat $perms (include "runway-scale-set.kubeActions.verbRules" (dict "loc" $loc "verb" .) | fromYamlArray) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $clusterScoped (eq $roleType "Role") }}
{{- fail (printf "kubernetesActions: %s %s cluster-scoped; a Role cannot grant them: set `roleType: ClusterRole`" (join ", " $clusterScoped) (ternary "is" "are" (eq (len $clusterScoped) 1))) }}
{{- end }}
{{- $listed := .Values.kubernetesActionsNamespaces | default list | uniq }}
{{- $roleNamespaces := $listed }}
{{- if and (eq $roleType "Role") (not $listed) }}
{{- $roleNamespaces = list $ns }}
{{- end }}
{{- /* Rules on cluster-scoped resources would be inert in a RoleBinding: with
  listed namespaces they go to a second ClusterRole bound cluster-wide. */}}
{{- $split := and (eq $roleType "ClusterRole") $listed }}
{{- $main := list }}
{{- $cluster := list }}
{{- range $perms }}
{{- if and $split (hasSuffix "|cluster" .) }}
{{- $cluster = append $cluster . }}
{{- else }}
{{- $main = append $main . }}
{{- end }}
{{- end }}
{{- $rules := include "runway-scale-set.kubeActions.rules" $main | fromYamlArray }}
{{- $rules = concat $rules (.Values.kubernetesPermissions | default list) }}
actions:
  {{- toYaml $actions | nindent 2 }}
namespaces:
  {{- toYaml (ternary $listed $roleNamespaces (eq $roleType "ClusterRole")) | nindent 2 }}
protected:
  {{- toYaml (.Values.kubernetesActionsProtectedNamespaces | default list | uniq) | nindent 2 }}
roleType: {{ $roleType }}
roleNamespaces:
  {{- toYaml $roleNamespaces | nindent 2 }}
rules:
  {{- toYaml $rules | nindent 2 }}
clusterRules:
  {{- if $cluster }}
  {{- include "runway-scale-set.kubeActions.rules" $cluster | nindent 2 }}
  {{- else }} []
  {{- end }}
serviceAccount: {{ $sa | quote }}
{{- end }}

{{/* The allowlist file, in the format runner-image/agent/src/kube/allowlist.rs reads. */}}
{{- define "runway-scale-set.kubeActions.allowlist" -}}
{{- $plan := include "runway-scale-set.kubeActions.plan" . | fromYaml }}
actions:
  {{- range $resource, $verbs := $plan.actions }}
  {{ $resource }}: [{{ join ", " $verbs }}]
  {{- end }}
namespaces: [{{ join ", " $plan.namespaces }}]
protectedNamespaces: [{{ join ", " $plan.protected }}]
{{- end }}

{{/* Where the allowlist is mounted, and the env `runway` reads it and its identity from. */}}
{{- define "runway-scale-set.kubeActions.mountPath" -}}/etc/runway/kube-actions{{- end }}

{{- define "runway-scale-set.kubeActions.env" -}}
- name: RUNWAY_KUBE_ALLOWLIST
  value: {{ include "runway-scale-set.kubeActions.mountPath" . }}/allowlist.yaml
- name: RUNWAY_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: RUNWAY_RUNNER_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{/*
`items` with those of `extra` whose `name` is not among them appended: the
user's volumes, mounts and env entries win over the chart's of the same name.
Call with (dict "items" list "extra" list); YAML list out.
*/}}
{{- define "runway-scale-set.mergeByName" -}}
{{- $out := .items | default list }}
{{- $names := list }}
{{- range $out }}{{ $names = append $names .name }}{{ end }}
{{- range .extra }}
{{- if not (has .name $names) }}{{ $out = append $out . }}{{ end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Adds to the runner pod template (a copy, changed in place) what `runway`
needs: the allowlist (kubernetesActions) and the AWS config (aws), each a
read-only volume on the `runner` container plus env. Call with
(dict "root" $ "template" <copy of template>).
*/}}
{{- define "runway-scale-set.runnerPodAdditions" -}}
{{- $root := .root }}
{{- $fullname := include "runway-scale-set.fullname" $root }}
{{- $volumes := list }}
{{- $mounts := list }}
{{- $env := list }}
{{- if include "runway-scale-set.kubeActions.enabled" $root }}
{{- $volumes = append $volumes (dict "name" "runway-kube-actions" "configMap" (dict "name" (printf "%s-kube-actions" $fullname))) }}
{{- $mounts = append $mounts (dict "name" "runway-kube-actions" "mountPath" (include "runway-scale-set.kubeActions.mountPath" $root) "readOnly" true) }}
{{- $env = concat $env (include "runway-scale-set.kubeActions.env" $root | fromYamlArray) }}
{{- end }}
{{- if $root.Values.aws }}
{{- $volumes = append $volumes (dict "name" "runway-aws" "configMap" (dict "name" (printf "%s-aws" $fullname))) }}
{{- $mounts = append $mounts (dict "name" "runway-aws" "mountPath" "/etc/runway/aws" "readOnly" true) }}
{{- $env = append $env (dict "name" "RUNWAY_AWS_CONFIG" "value" "/etc/runway/aws/config.yaml") }}
{{- end }}
{{- if $volumes }}
{{- $spec := .template.spec }}
{{- $_ := set $spec "volumes" (include "runway-scale-set.mergeByName" (dict "items" $spec.volumes "extra" $volumes) | fromYamlArray) }}
{{- range $spec.containers }}
{{- if eq .name "runner" }}
{{- $_ := set . "volumeMounts" (include "runway-scale-set.mergeByName" (dict "items" .volumeMounts "extra" $mounts) | fromYamlArray) }}
{{- $_ := set . "env" (include "runway-scale-set.mergeByName" (dict "items" .env "extra" $env) | fromYamlArray) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
