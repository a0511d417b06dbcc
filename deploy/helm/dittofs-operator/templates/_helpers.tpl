{{/* Names, labels and image references shared by the templates. */}}

{{- define "dittofs-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object-name prefix: the release name, with the chart name unless the release name holds it. */}}
{{- define "dittofs-operator.fullname" -}}
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

{{- define "dittofs-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dittofs-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Labels of every object of the release (the CRD too). */}}
{{- define "dittofs-operator.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "dittofs-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of the controller's objects. */}}
{{- define "dittofs-operator.labels" -}}
{{ include "dittofs-operator.commonLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "dittofs-operator.serviceAccountName" -}}
{{- default (include "dittofs-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "dittofs-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "dittofs-operator.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag (tag defaulting to appVersion). */}}
{{- define "dittofs-operator.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "dittofs-operator.controllerImage" -}}
{{- include "dittofs-operator.imageRef" (list .Values.image .) }}
{{- end }}

{{- define "dittofs-operator.agentImage" -}}
{{- include "dittofs-operator.imageRef" (list .Values.agent.image .) }}
{{- end }}

{{/* The one namespace the controller watches, or "" for all (the controller supports exactly these two). */}}
{{- define "dittofs-operator.watchNamespace" -}}
{{- if gt (len .Values.watchNamespaces) 1 }}
{{- fail "watchNamespaces: the controller watches all namespaces or exactly one; install one release per namespace" }}
{{- end }}
{{- first .Values.watchNamespaces | default "" }}
{{- end }}

{{/*
The controller's rules: exactly deploy/rbac/controller-rbac.yaml's ClusterRole (a test compares them), used
for the ClusterRole or, in namespaced mode, the Role in the watched namespace. See that file for why each
verb is needed.
*/}}
{{- define "dittofs-operator.rules" -}}
- apiGroups: ["dittofs.dittofs.com"]
  resources: ["dittoservers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["dittofs.dittofs.com"]
  resources: ["dittoservers/status"]
  verbs: ["get", "patch"]
- apiGroups: ["dittofs.dittofs.com"]
  resources: ["dittoservers/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["pgv2.percona.com"]
  resources: ["perconapgclusters"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
