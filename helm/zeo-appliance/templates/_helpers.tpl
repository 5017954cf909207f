{{/*
Names. Every resource is "<fullname>-<component>"; fullname is cut to 40
characters so the longest suffix ("-renderer-readonly") still fits the
63-character limit of Service names and labels.
*/}}
{{- define "zeo-appliance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "zeo-appliance.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "zeo-appliance.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Call with (dict "ctx" $ "component" "storage").
*/}}
{{- define "zeo-appliance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zeo-appliance.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "zeo-appliance.labels" -}}
helm.sh/chart: {{ include "zeo-appliance.chart" .ctx }}
{{ include "zeo-appliance.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "zeo-appliance.name" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An image reference; the tag defaults to the chart's appVersion.
Call with (dict "ctx" $ "image" .Values.storage.image).
*/}}
{{- define "zeo-appliance.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .ctx.Chart.AppVersion) }}
{{- end }}

{{- define "zeo-appliance.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zeo-appliance.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ClusterIP Service renderers reach the storage node through. */}}
{{- define "zeo-appliance.zeoServiceName" -}}
{{- printf "%s-zeo" (include "zeo-appliance.fullname" .) }}
{{- end }}

{{/* host:port of the ZEO storage server, as ZEO_ADDRESS wants it. */}}
{{- define "zeo-appliance.zeoAddress" -}}
{{- printf "%s:%d" (include "zeo-appliance.zeoServiceName" .) (int .Values.storage.port) }}
{{- end }}

{{- define "zeo-appliance.rendererConfigMapName" -}}
{{- .Values.renderer.config.existingConfigMap | default (printf "%s-renderer" (include "zeo-appliance.fullname" .)) }}
{{- end }}

{{- define "zeo-appliance.blobsClaimName" -}}
{{- .Values.blobs.shared.existingClaim | default (printf "%s-blobs" (include "zeo-appliance.fullname" .)) }}
{{- end }}

{{- define "zeo-appliance.productsClaimName" -}}
{{- .Values.renderer.products.volume.existingClaim | default (printf "%s-products" (include "zeo-appliance.fullname" .)) }}
{{- end }}
