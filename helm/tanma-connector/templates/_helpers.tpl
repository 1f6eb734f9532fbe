{{/* Chart name. */}}
{{- define "tanma-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "tanma-connector.fullname" -}}
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

{{- define "tanma-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tanma-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tanma-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tanma-connector.labels" -}}
helm.sh/chart: {{ include "tanma-connector.chart" . }}
{{ include "tanma-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tanma-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tanma-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tanma-connector.secretName" -}}
{{- default (include "tanma-connector.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* True when Kafka uses SASL. */}}
{{- define "tanma-connector.sasl" -}}
{{- if hasPrefix "sasl" (lower (toString .Values.config.kafka.security_protocol)) }}true{{ end }}
{{- end }}

{{/* True when the schema registry uses basic auth. */}}
{{- define "tanma-connector.registryAuth" -}}
{{- if .Values.config.schema_registry.username }}true{{ end }}
{{- end }}

{{- define "tanma-connector.secretDir" -}}/etc/tanma/secrets{{- end }}
{{- define "tanma-connector.stateDir" -}}/var/lib/tanma{{- end }}

{{/*
The connector's config.toml: .Values.config plus the keys the chart owns (state dir, ops listen
address, secret files). Helm reads every YAML number as a float and toToml writes 3600 as
3600.0, which the connector's integer keys reject, so integral floats are written back as
integers (the connector's float keys accept integers).
*/}}
{{- define "tanma-connector.configToml" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $dir := include "tanma-connector.secretDir" . }}
{{- $_ := set $cfg "state" (merge (dict "dir" (include "tanma-connector.stateDir" .)) (default dict $cfg.state)) }}
{{- $_ := set $cfg "ops" (merge (dict "listen" (printf "0.0.0.0:%d" (int .Values.service.port))) (default dict $cfg.ops)) }}
{{- $api := default dict $cfg.api }}
{{- $_ := set $api "app_key_file" (printf "%s/%s" $dir .Values.secrets.keys.appKey) }}
{{- $_ := set $cfg "api" $api }}
{{- if include "tanma-connector.sasl" . }}
{{- $_ := set $cfg.kafka "sasl_password_file" (printf "%s/%s" $dir .Values.secrets.keys.saslPassword) }}
{{- end }}
{{- if include "tanma-connector.registryAuth" . }}
{{- $_ := set $cfg.schema_registry "password_file" (printf "%s/%s" $dir .Values.secrets.keys.schemaRegistryPassword) }}
{{- end }}
{{- regexReplaceAll "([=\\[,]\\s*-?[0-9]+)\\.0\\b" (toToml $cfg) "${1}" }}
{{- end }}

{{/* Render-time checks. */}}
{{- define "tanma-connector.validate" -}}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount must be 0 or 1: the connector owns one Kafka transactional.id, and a second replica would fence the first. Run a separate release with its own config.kafka.transactional_id to split the work." }}
{{- end }}
{{- if not .Values.config.api.base_url }}
{{- fail "config.api.base_url is required (e.g. https://account.tanmarket.cn/apiServer)" }}
{{- end }}
{{- if not .Values.config.api.app_id }}
{{- fail "config.api.app_id is required" }}
{{- end }}
{{- if not .Values.config.kafka.bootstrap_servers }}
{{- fail "config.kafka.bootstrap_servers is required" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- if not .Values.secrets.appKey }}
{{- fail "secrets.appKey is required (or point secrets.existingSecret at a Secret holding it)" }}
{{- end }}
{{- if and (include "tanma-connector.sasl" .) (not .Values.secrets.saslPassword) }}
{{- fail "secrets.saslPassword is required with config.kafka.security_protocol sasl_* (or use secrets.existingSecret)" }}
{{- end }}
{{- if and (include "tanma-connector.registryAuth" .) (not .Values.secrets.schemaRegistryPassword) }}
{{- fail "secrets.schemaRegistryPassword is required with config.schema_registry.username (or use secrets.existingSecret)" }}
{{- end }}
{{- end }}
{{- if and (include "tanma-connector.sasl" .) (not .Values.config.kafka.sasl_username) }}
{{- fail "config.kafka.sasl_username is required with SASL" }}
{{- end }}
{{- end }}
