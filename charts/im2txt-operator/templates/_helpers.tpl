{{/* The app name: the chart's, unless nameOverride. */}}
{{- define "im2txt-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Objects' names: the release name where it contains the app name (release im2txt-operator: the names of
manifests/base), else <release>-<name>, so two releases' cluster-scoped RBAC objects never collide. */}}
{{- define "im2txt-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "im2txt-operator.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "im2txt-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "im2txt-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* manifests/base's labels plus the ones Helm charts carry (chart, instance, version, managed-by). */}}
{{- define "im2txt-operator.labels" -}}
{{ include "im2txt-operator.selectorLabels" . }}
app.kubernetes.io/part-of: im2txt-operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's rights on trainings, their Jobs, pods and events (docs/contracts.md): a ClusterRole's rules
when it serves all namespaces, a Role's in each namespace it serves. */}}
{{- define "im2txt-operator.namespacedRules" -}}
# The trainings themselves: read and watch only. Users own the resource; the operator never writes its spec
# or metadata (no finalizers, no kopf annotations), so GitOps tools see no drift.
- apiGroups: ["im2txt.dev"]
  resources: ["im2txttrainings"]
  verbs: ["get", "list", "watch"]
# Progress (phase, stage, step, conditions) is reported only through the status subresource.
- apiGroups: ["im2txt.dev"]
  resources: ["im2txttrainings/status"]
  verbs: ["patch"]
# One Job per stage, owned by the training: create, follow, delete while suspended (resume creates it again).
# Never patch: spec.suspend belongs to Kueue where it queues the Job.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Read-only: why Kueue holds a stage's Job (its Workload's conditions), for status.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list"]
# TensorBoard per training (spec.tensorboard.enabled): a Deployment and a Service owned by the training.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
# A multi-node stage's NetworkPolicy: its workers' port 2222 open only to each other; owned by the training.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch"]
# Find the running pod of a stage's Job, then read the trainer container's log for the current step.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Check that a pvc:// path's claim exists, so a missing claim is reported in status, not as a Pending pod.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"]
# Events on the trainings (kopf posts core v1 Events); list: a stage Job's FailedCreate Events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list", "create"]
{{- end }}

{{/* Settings that cannot work together fail the render, naming the value. */}}
{{- define "im2txt-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled=true: two operators acting at once would both create Jobs and write status" }}
{{- end }}
{{- end }}
