{{/* Names and labels. */}}
{{- define "inferia.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "inferia.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "inferia.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "inferia.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "inferia.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "inferia.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include "inferia.selectorLabels" (list . "web") */}}
{{- define "inferia.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "inferia.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "inferia.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "inferia.secretName" -}}
{{- if .Values.secrets.create -}}
{{- include "inferia.fullname" . -}}
{{- else -}}
{{- required "secrets.existingSecret (or secrets.create: true) is required" .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "inferia.probeHost" -}}
{{- default (first .Values.config.allowedHosts | trimPrefix ".") .Values.web.probeHost -}}
{{- end -}}

{{/* Environment of every container: the ConfigMap and the Secret. */}}
{{- define "inferia.envFrom" -}}
- configMapRef:
    name: {{ include "inferia.fullname" . }}
- secretRef:
    name: {{ include "inferia.secretName" . }}
{{- end -}}

{{/* The root file system is read-only: /tmp is the one writable place. */}}
{{- define "inferia.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "inferia.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Pod-level fields shared by every workload: include "inferia.podCommon" (list . .Values.web) */}}
{{- define "inferia.podCommon" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "inferia.tmpVolume" $root | nindent 2 }}
{{- end -}}
