{{/* The chart's name, possibly overridden. */}}
{{- define "leaderboard-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: RELEASE-CHART, or RELEASE alone if it already contains the chart's name. */}}
{{- define "leaderboard-operator.fullname" -}}
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

{{- define "leaderboard-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leaderboard-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leaderboard-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leaderboard-operator.labels" -}}
helm.sh/chart: {{ include "leaderboard-operator.chart" . }}
{{ include "leaderboard-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: leaderboard-cluster
{{- end }}

{{- define "leaderboard-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leaderboard-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "leaderboard-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "leaderboard-operator.nodeImage" -}}
{{- printf "%s:%s" .Values.node.image.repository (default .Chart.AppVersion .Values.node.image.tag) }}
{{- end }}

{{/* "true" when a watched namespace is a glob: then only a ClusterRole can cover it. */}}
{{- define "leaderboard-operator.globbedNamespaces" -}}
{{- range .Values.watchNamespaces }}{{ if regexMatch "[*?\\[\\]!]" . }}true{{ end }}{{ end }}
{{- end }}

{{/* The namespaced rules of the operator (leaderboard_operator/resources.py; a test compares). */}}
{{- define "leaderboard-operator.namespacedRules" -}}
# The clusters it runs.
- apiGroups: [leaderboard-cluster.dev]
  resources: [leaderboardclusters]
  verbs: [get, list, watch, patch]
- apiGroups: [leaderboard-cluster.dev]
  resources: [leaderboardclusters/status]
  verbs: [get, patch]
# Children with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: [leaderboard-cluster.dev]
  resources: [leaderboardclusters/finalizers]
  verbs: [update]
# The clusters' children: created, read and patched one by one, deleted with their cluster.
- apiGroups: [""]
  resources: [services, configmaps, serviceaccounts]
  verbs: [get, create, patch, delete]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, patch, delete]
# The generated peer token: created once, never read (the garbage collector deletes it).
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
# Members' state; also needed to grant the nodes' Role (get/list/watch pods).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# The nodes' volumes, deleted with their cluster unless retained.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, delete]
# Events about the clusters (kopf posts them).
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
