{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "tcpstate-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release-chart unless the release name already
contains the chart name.
*/}}
{{- define "tcpstate-exporter.fullname" -}}
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

{{- define "tcpstate-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels the DaemonSet selects its pods by; the Service, the ServiceMonitor
and the PodMonitor select on the same set.
*/}}
{{- define "tcpstate-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tcpstate-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels on every object of the chart.
*/}}
{{- define "tcpstate-exporter.labels" -}}
helm.sh/chart: {{ include "tcpstate-exporter.chart" . }}
{{ include "tcpstate-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ include "tcpstate-exporter.tag" . | trunc 63 | quote }}
app.kubernetes.io/component: metrics
app.kubernetes.io/part-of: {{ include "tcpstate-exporter.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tcpstate-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tcpstate-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tcpstate-exporter.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Image reference: repository:tag, plus @digest when one is pinned.
*/}}
{{- define "tcpstate-exporter.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "tcpstate-exporter.tag" .) }}
{{- with .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref . }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
"true" when the exporter reads every network namespace of the node
(netnsMode: all), "" in host mode. Fails on any other mode.
*/}}
{{- define "tcpstate-exporter.podMode" -}}
{{- if eq .Values.netnsMode "all" }}true
{{- else if ne .Values.netnsMode "host" }}
{{- fail (printf "netnsMode must be \"host\" or \"all\", got %q" (toString .Values.netnsMode)) }}
{{- end }}
{{- end }}

{{/*
The web config as YAML text, whether given as a string or an object; empty
when none is set.
*/}}
{{- define "tcpstate-exporter.webConfig" -}}
{{- $c := .Values.webConfig.content }}
{{- if kindIs "string" $c }}
{{- $c }}
{{- else if $c }}
{{- toYaml $c }}
{{- end }}
{{- end }}

{{/*
"true" when the web config requires basic auth: the kubelet then cannot
probe over HTTP without credentials.
*/}}
{{- define "tcpstate-exporter.basicAuth" -}}
{{- $text := include "tcpstate-exporter.webConfig" . }}
{{- if $text }}
{{- $parsed := fromYaml $text }}
{{- if hasKey $parsed "Error" }}
{{- fail (printf "webConfig.content is not valid YAML: %s" $parsed.Error) }}
{{- end }}
{{- if $parsed.basic_auth_users }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Scrape scheme for a monitor: its own setting, else https when the exporter
serves TLS.
*/}}
{{- define "tcpstate-exporter.scheme" -}}
{{- $ctx := index . 0 }}
{{- $mon := index . 1 }}
{{- if $mon.scheme }}
{{- $mon.scheme }}
{{- else if $ctx.Values.webConfig.tlsEnabled }}https
{{- else }}http
{{- end }}
{{- end }}

{{/*
A probe from values: httpGet gets the metrics port and the scheme, or is
replaced by a tcpSocket check when basic auth is required.
Called with (list $ctx $probeValues).
*/}}
{{- define "tcpstate-exporter.probe" -}}
{{- $ctx := index . 0 }}
{{- $probe := deepCopy (index . 1) }}
{{- if $probe.httpGet }}
{{- if include "tcpstate-exporter.basicAuth" $ctx }}
{{- $_ := unset $probe "httpGet" }}
{{- $_ := set $probe "tcpSocket" (dict "port" "http-metrics") }}
{{- else }}
{{- $_ := set $probe.httpGet "port" "http-metrics" }}
{{- $scheme := "HTTP" }}
{{- if $ctx.Values.webConfig.tlsEnabled }}
{{- $scheme = "HTTPS" }}
{{- end }}
{{- $_ := set $probe.httpGet "scheme" $scheme }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{- define "tcpstate-exporter.monitorNamespace" -}}
{{- $ctx := index . 0 }}
{{- $ns := index . 1 }}
{{- default $ctx.Release.Namespace $ns }}
{{- end }}
