{{- define "goldenimage.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "goldenimage.serviceAccountName" -}}
{{- default (include "goldenimage.name" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "goldenimage.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "goldenimage.labels" -}}
app.kubernetes.io/name: goldenimage-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "goldenimage.selector" -}}
app.kubernetes.io/name: goldenimage-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
