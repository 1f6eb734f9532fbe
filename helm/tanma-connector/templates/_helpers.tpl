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
The connector's configuration: .Values.config plus the keys the chart owns (state dir, ops
listen address, secret files), written as JSON with toPrettyJson. No text is rewritten: Go's JSON
encoder writes every string byte for byte and every integral number without exponent or
fraction (YAML numbers reach templates as float64: 2592000 stays 2592000, never 2.592e+06), and
the connector picks the JSON parser from the file's extension.
*/}}
{{- define "tanma-connector.configFile" -}}config.json{{- end }}
{{- define "tanma-connector.configPath" -}}/etc/tanma/{{ include "tanma-connector.configFile" . }}{{- end }}
{{- define "tanma-connector.configJson" -}}
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
{{- toPrettyJson $cfg }}
{{- end }}

{{/* The Grafana dashboard with a uid and title of this release (unique per namespace/release). */}}
{{- define "tanma-connector.dashboardUid" -}}
{{- $full := include "tanma-connector.fullname" . }}
{{- if .Values.dashboards.uid }}
{{- .Values.dashboards.uid }}
{{- else }}
{{- printf "%s-%s" ($full | trunc 31 | trimSuffix "-") (printf "%s/%s" .Release.Namespace $full | sha256sum | trunc 8) }}
{{- end }}
{{- end }}
{{- define "tanma-connector.dashboardJson" -}}
{{- $d := .Files.Get "dashboards/tanma-connector.json" | mustFromJson }}
{{- $_ := set $d "uid" (include "tanma-connector.dashboardUid" .) }}
{{- $_ := set $d "title" (printf "%s (%s/%s)" $d.title .Release.Namespace (include "tanma-connector.fullname" .)) }}
{{- toPrettyJson $d }}
{{- end }}

{{/* The image reference; image.repository is required (see tanma-connector.validate). */}}
{{- define "tanma-connector.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Mounts of the config file and the secret files: the Deployment's and the Helm test's. */}}
{{- define "tanma-connector.configMounts" -}}
- name: config
  mountPath: {{ include "tanma-connector.configPath" . }}
  subPath: {{ include "tanma-connector.configFile" . }}
  readOnly: true
- name: secrets
  mountPath: {{ include "tanma-connector.secretDir" . }}
  readOnly: true
{{- end }}
{{/* Volumes behind tanma-connector.configMounts. Secret files: 0440, group fsGroup. */}}
{{- define "tanma-connector.configVolumes" -}}
- name: config
  configMap:
    name: {{ include "tanma-connector.fullname" . }}
- name: secrets
  secret:
    secretName: {{ include "tanma-connector.secretName" . }}
    defaultMode: 0440
{{- end }}

{{/* Seconds between the connector's shutdown grace and Kubernetes' SIGKILL (flush, exit). */}}
{{- define "tanma-connector.graceMargin" -}}10{{- end }}

{{/* Render-time checks. */}}
{{- define "tanma-connector.validate" -}}
{{- if ne (int .Values.replicaCount) 1 }}
{{- fail "replicaCount must be 1: the connector owns one Kafka transactional.id, and a second replica would fence the first. Run a separate release with its own config.kafka.transactional_id to split the work." }}
{{- end }}
{{- if not .Values.image.repository }}
{{- fail "image.repository is required: build the image from the Dockerfile, push it to a registry your cluster can pull from, and set image.repository (e.g. registry.example.com/tanma-connector) and image.tag" }}
{{- end }}
{{- if eq (toString .Values.image.tag) "latest" }}
{{- fail "image.tag \"latest\" is refused: pin the version you pushed (e.g. image.tag=0.1.0), so that a pod restart cannot silently change the connector" }}
{{- end }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- $ops := default dict .Values.config.ops }}
{{- $shutdown := 30 }}
{{- if hasKey $ops "shutdown_grace_secs" }}{{ $shutdown = int $ops.shutdown_grace_secs }}{{ end }}
{{- range .Values.extraEnv }}{{ if and (eq .name "TANMA_OPS__SHUTDOWN_GRACE_SECS") .value }}{{ $shutdown = int .value }}{{ end }}{{ end }}
{{- $margin := int (include "tanma-connector.graceMargin" .) }}
{{- if lt $grace (add $shutdown $margin) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least config.ops.shutdown_grace_secs (%d) + %d: Kubernetes would SIGKILL the connector while it finishes or aborts its open transaction" $grace $shutdown $margin) }}
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
