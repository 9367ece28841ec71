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
{{- if not (has $k (list "server" "executor")) }}{{ $any = true }}{{ end }}
{{- end }}
{{- if $any }}true{{ end }}
{{- end }}

{{/*
RunnerScaleSet spec.kubeActions (CONTRACT-14): the executor container the
controller adds to runner pods, from kubernetesActions.executor. No image:
the controller uses the runner container's.
*/}}
{{- define "runway-scale-set.kubeActions.executorSpec" -}}
{{- $ka := .Values.kubernetesActions | default dict }}
{{- $executor := $ka.executor | default dict }}
{{- $image := $executor.image | default dict }}
allowlistConfigMap: {{ printf "%s-kube-actions" (include "runway-scale-set.fullname" .) | quote }}
{{- if $image.repository }}
image: {{ printf "%s:%s" $image.repository (include "runway-scale-set.string" ($image.tag | default .Chart.AppVersion)) | quote }}
{{- end }}
{{- with $image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- with $executor.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* kubernetesActions.server, or an empty dict. */}}
{{- define "runway-scale-set.kubeActions.server" -}}
{{- $ka := .Values.kubernetesActions | default dict }}
{{- toYaml ($ka.server | default dict) }}
{{- end }}

{{/*
Refuses values that would hand a job the scale set's own credentials or
more than the values name (issue 14, point 2). The scope the actions' RBAC
is bound in: kubernetesActionsNamespaces when listed, else the release
namespace (Role) or every namespace (ClusterRole). The release namespace
holds githubConfigSecret and the runners' JIT Secrets, so no Secret access
may be bound there. Call with (dict "ns" "roleType" "listed" "protected"
"actions" "permissions"); renders nothing.
*/}}
{{- define "runway-scale-set.kubeActions.refuseOverreach" -}}
{{- $ns := .ns }}
{{- $releaseInScope := or (not .listed) (has $ns .listed) }}
{{- $where := ternary (printf "kubernetesActionsNamespaces lists the release namespace %s" $ns) (ternary (printf "roleType ClusterRole without kubernetesActionsNamespaces binds the RBAC in every namespace, %s included" $ns) (printf "roleType Role without kubernetesActionsNamespaces binds the RBAC in the release namespace %s" $ns) (eq .roleType "ClusterRole")) (not (not .listed)) }}
{{- $secretsFix := printf "the scale set's GitHub credentials (githubConfigSecret) and the runners' JIT Secrets live there and a job could read them; list the namespaces jobs may act in under kubernetesActionsNamespaces, leaving %s out" $ns }}
{{- if and $releaseInScope (get .actions "secrets") }}
{{- fail (printf "kubernetesActions.secrets: Secret access is refused in the release namespace (%s): %s" $where $secretsFix) }}
{{- end }}
{{- range $i, $rule := .permissions }}
{{- $key := printf "kubernetesPermissions[%d]" $i }}
{{- range $verb := ($rule.verbs | default list) }}
{{- if has (toString $verb) (list "*" "escalate" "bind" "impersonate") }}
{{- fail (printf "%s.verbs: `%s` is refused: it would let a job grant itself (or act as) more than the values name; list the verbs the custom objects need (get, list, watch, create, update, patch, delete)" $key (toString $verb)) }}
{{- end }}
{{- end }}
{{- if has "*" ($rule.apiGroups | default list) }}
{{- fail (printf "%s.apiGroups: `*` is refused: it reaches every API group, present and future; name the API groups of the custom objects (e.g. argoproj.io)" $key) }}
{{- end }}
{{- if has "*" ($rule.resources | default list) }}
{{- fail (printf "%s.resources: `*` is refused: it reaches every resource of the group, Secrets included; name the resources (e.g. rollouts)" $key) }}
{{- end }}
{{- if and $releaseInScope (has "" ($rule.apiGroups | default list)) (has "secrets" ($rule.resources | default list)) }}
{{- fail (printf "%s.resources: secrets are refused in the release namespace (%s): %s" $key $where $secretsFix) }}
{{- end }}
{{- end }}
{{- if and (eq .roleType "ClusterRole") (not .listed) .protected }}
{{- fail (printf "kubernetesActionsProtectedNamespaces: with roleType ClusterRole and no kubernetesActionsNamespaces the RBAC is bound cluster-wide, so it reaches %s too; list the namespaces jobs may act in under kubernetesActionsNamespaces instead (the RBAC is then bound in each), or use roleType Role" (join ", " .protected)) }}
{{- end }}
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
{{- if not (has $resource (list "server" "executor")) }}
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
{{- $protected := .Values.kubernetesActionsProtectedNamespaces | default list | uniq }}
{{- include "runway-scale-set.kubeActions.refuseOverreach" (dict "ns" $ns "roleType" $roleType "listed" $listed "protected" $protected "actions" $actions "permissions" (.Values.kubernetesPermissions | default list)) }}
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
  {{- toYaml $protected | nindent 2 }}
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
needs: the AWS config (aws), a read-only volume on the `runner` container
plus env. The allowlist is not mounted here: with kubernetesActions the
controller adds the executor container (RunnerScaleSet spec.kubeActions),
which alone mounts it and holds the API token. Call with
(dict "root" $ "template" <copy of template>).
*/}}
{{- define "runway-scale-set.runnerPodAdditions" -}}
{{- $root := .root }}
{{- $fullname := include "runway-scale-set.fullname" $root }}
{{- $volumes := list }}
{{- $mounts := list }}
{{- $env := list }}
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
