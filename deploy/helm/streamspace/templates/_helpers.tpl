{{/*
Names. Every object is called "<release>-<component>", or "<release>" alone when the release
is itself called like the chart; fullnameOverride replaces the release part.
*/}}
{{- define "streamspace.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamspace.serverName" -}}{{ include "streamspace.fullname" . }}-server{{- end -}}
{{- define "streamspace.redisName" -}}{{ include "streamspace.fullname" . }}-redis{{- end -}}
{{- define "streamspace.postgresqlName" -}}{{ include "streamspace.fullname" . }}-postgresql{{- end -}}
{{- define "streamspace.agentName" -}}{{ include "streamspace.fullname" . }}-agent{{- end -}}

{{/* Labels every object carries; call with (dict "ctx" $ "component" "server"). */}}
{{- define "streamspace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "streamspace.selectorLabels" . }}
{{- end -}}

{{/* The labels selectors match on; never change them in an upgrade. */}}
{{- define "streamspace.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "streamspace.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret holding DATABASE_URL / STREAMSPACE_ADMIN_TOKEN / REDIS_URL for the server. */}}
{{- define "streamspace.serverSecretName" -}}
{{- .Values.controlPlane.existingSecret | default (include "streamspace.serverName" .) -}}
{{- end -}}

{{- define "streamspace.postgresqlSecretName" -}}
{{- .Values.postgresql.existingSecret | default (include "streamspace.postgresqlName" .) -}}
{{- end -}}

{{- define "streamspace.agentSecretName" -}}
{{- .Values.agent.existingSecret | default (include "streamspace.agentName" .) -}}
{{- end -}}

{{/* Where the agent's sessions live: their own namespace, or the release's. */}}
{{- define "streamspace.sessionNamespace" -}}
{{- .Values.agent.sessionNamespace | default .Release.Namespace -}}
{{- end -}}

{{/* Where the agent finds the control plane: the in-cluster Service unless told otherwise. */}}
{{- define "streamspace.agentServer" -}}
{{- $scheme := ternary "https" "http" (not (empty .Values.controlPlane.tls.secretName)) -}}
{{- .Values.agent.server | default (printf "%s://%s.%s.svc:%v" $scheme (include "streamspace.serverName" .) .Release.Namespace .Values.controlPlane.service.port) -}}
{{- end -}}

{{/* The name on the replicas' certificate they verify each other against. */}}
{{- define "streamspace.internalTlsName" -}}
{{- .Values.controlPlane.tls.internalName | default (printf "%s.%s.svc" (include "streamspace.serverName" .) .Release.Namespace) -}}
{{- end -}}

{{/* Pod and container security settings shared by the StreamSpace pods. */}}
{{- define "streamspace.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "streamspace.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end -}}
