{{/* Chart name, at most 63 characters (a label value). */}}
{{- define "channelapp-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name of the operator's objects; the release name alone when it already contains the chart name. */}}
{{- define "channelapp-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels the Deployment selects its pods by; never change them on upgrade. */}}
{{- define "channelapp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "channelapp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object the chart renders. */}}
{{- define "channelapp-operator.labels" -}}
{{ include "channelapp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: channelapp
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "channelapp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "channelapp-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the cluster-scoped admission policy and binding: one per namespace-scoped release. */}}
{{- define "channelapp-operator.policyName" -}}
{{- if eq .Values.rbac.scope "cluster" -}}
{{- include "channelapp-operator.fullname" . -}}
{{- else -}}
{{- printf "%s.%s" (include "channelapp-operator.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}
