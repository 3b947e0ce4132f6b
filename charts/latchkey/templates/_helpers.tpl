{{/*
Names, labels and shared pieces of the Latchkey chart.
*/}}

{{- define "latchkey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every object: fullnameOverride, else the release name if it contains the
chart name, else "<release>-<chart>". Truncated to leave room for the "-operator"
suffix (and "-operator-leader-election" for the Lease Role, which has no length limit).
*/}}
{{- define "latchkey.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "latchkey.operator.fullname" -}}
{{- printf "%s-operator" (include "latchkey.fullname" .) }}
{{- end }}

{{- define "latchkey.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "latchkey.labels" -}}
helm.sh/chart: {{ include "latchkey.chart" . }}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: latchkey
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "latchkey.service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "latchkey.service.labels" -}}
{{ include "latchkey.labels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "latchkey.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "latchkey.operator.labels" -}}
{{ include "latchkey.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "latchkey.service.serviceAccountName" -}}
{{- if .Values.service.serviceAccount.create }}
{{- default (include "latchkey.fullname" .) .Values.service.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.service.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "latchkey.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "latchkey.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "latchkey.service.image" -}}
{{- $img := .Values.image.service }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}

{{- define "latchkey.operator.image" -}}
{{- $img := .Values.image.operator }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}

{{/* The issuer: .Values.issuer without a trailing slash, else the in-cluster URL of the Service. */}}
{{- define "latchkey.issuer" -}}
{{- if .Values.issuer }}
{{- .Values.issuer | trimSuffix "/" }}
{{- else }}
{{- printf "http://%s.%s.svc" (include "latchkey.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "latchkey.signingKey.name" -}}
{{- default (include "latchkey.fullname" .) .Values.signingKey.name }}
{{- end }}

{{/* The Secret the service mounts as LATCHKEY_KEYS_DIR (the CRD's default is <name>-signing-keys). */}}
{{- define "latchkey.signingKey.secretName" -}}
{{- default (printf "%s-signing-keys" (include "latchkey.signingKey.name" .)) .Values.signingKey.secretName }}
{{- end }}

{{/* The namespace the operator watches ("" = all), after templating. */}}
{{- define "latchkey.operator.watchNamespace" -}}
{{- tpl (.Values.operator.watchNamespace | default "") . | trim }}
{{- end }}

{{- define "latchkey.operator.leaseName" -}}
{{- include "latchkey.operator.fullname" . }}
{{- end }}

{{/* Pod security context of every pod: the restricted Pod Security Standard. */}}
{{- define "latchkey.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context of every container: the restricted Pod Security Standard. */}}
{{- define "latchkey.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{/*
Environment of the service container and of its migration init container (`latchkey
migrate` validates the same settings as `serve`). Plain settings are collected in a dict
so that service.env overrides them without duplicate names; credentials come from
Secrets only.
*/}}
{{- define "latchkey.service.env" -}}
{{- $v := .Values }}
{{- $plain := dict
  "LATCHKEY_LISTEN" "0.0.0.0:8080"
  "LATCHKEY_METRICS_LISTEN" (printf "0.0.0.0:%v" $v.metrics.port)
  "LATCHKEY_ISSUER" (include "latchkey.issuer" .)
  "LATCHKEY_DATA_DIR" "/var/lib/latchkey"
  "LATCHKEY_KEYS_DIR" "/etc/latchkey/keys"
  "LATCHKEY_MANAGE_KEYS" "false"
  "LATCHKEY_KEYS_RELOAD_INTERVAL" $v.service.keysReloadInterval
  "LATCHKEY_JWKS_MAX_AGE" $v.service.jwksMaxAge
  "LATCHKEY_SHUTDOWN_DRAIN" $v.service.shutdownDrain
  "LATCHKEY_PRUNE_INTERVAL" (toString $v.service.pruneInterval)
  "LATCHKEY_PRUNE_BATCH" (toString $v.service.pruneBatch)
  "OAUTH2_ACCESS_TOKEN_EXPIRES" $v.service.accessTokenTTL
  "OAUTH2_REFRESH_TOKEN_EXPIRES" $v.service.refreshTokenTTL
  "DATABASE_MAX_CONNECTIONS" (toString $v.service.databaseMaxConnections)
  "LATCHKEY_LOG_FORMAT" $v.service.logFormat
  "LATCHKEY_LOG" $v.service.logLevel
}}
{{- with $v.service.audience }}{{ $_ := set $plain "LATCHKEY_AUDIENCE" . }}{{ end }}
{{- with $v.service.trustedProxies }}{{ $_ := set $plain "LATCHKEY_TRUSTED_PROXIES" . }}{{ end }}
{{- with $v.service.corsOrigins }}{{ $_ := set $plain "CORS_ORIGINS" . }}{{ end }}
{{- if $v.redis.enabled }}{{ $_ := set $plain "LATCHKEY_REDIS_PREFIX" $v.redis.prefix }}{{ end }}
{{- if and $v.smtp.enabled $v.smtp.from }}{{ $_ := set $plain "MAIL_FROM" $v.smtp.from }}{{ end }}
{{- range $name, $value := $v.service.env }}{{ $_ := set $plain $name (toString $value) }}{{ end }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.existingSecret }}
      key: {{ $v.database.secretKey }}
{{- if $v.redis.enabled }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.existingSecret }}
      key: {{ $v.redis.secretKey }}
{{- end }}
{{- if $v.smtp.enabled }}
- name: SMTP_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.smtp.existingSecret }}
      key: {{ $v.smtp.secretKey }}
{{- end }}
{{- range $name := keys $plain | sortAlpha }}
- name: {{ $name }}
  value: {{ get $plain $name | quote }}
{{- end }}
{{- with $v.service.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Environment of the operator container. */}}
{{- define "latchkey.operator.env" -}}
{{- $v := .Values }}
{{- $plain := dict
  "LATCHKEY_ISSUER" (include "latchkey.issuer" .)
  "LATCHKEY_OPERATOR_LISTEN" (printf "0.0.0.0:%d" (int $v.operator.metricsPort))
  "LATCHKEY_OPERATOR_LEADER_ELECTION" (toString $v.operator.leaderElection.enabled)
  "LATCHKEY_OPERATOR_LEASE_NAME" (include "latchkey.operator.leaseName" .)
  "LATCHKEY_OPERATOR_LEASE_DURATION" $v.operator.leaderElection.leaseDuration
  "LATCHKEY_OPERATOR_RESYNC" $v.operator.resyncInterval
  "LATCHKEY_CLUSTER_ISSUER_REFRESH" $v.operator.clusterIssuerRefresh
  "DATABASE_MAX_CONNECTIONS" (toString $v.operator.databaseMaxConnections)
  "LATCHKEY_LOG_FORMAT" $v.operator.logFormat
  "LATCHKEY_LOG" $v.operator.logLevel
}}
{{- with include "latchkey.operator.watchNamespace" . }}{{ $_ := set $plain "LATCHKEY_OPERATOR_NAMESPACE" . }}{{ end }}
{{- with $v.operator.allowedScopes }}{{ $_ := set $plain "LATCHKEY_ALLOWED_SCOPES" (join "," .) }}{{ end }}
{{- range $name, $value := $v.operator.env }}{{ $_ := set $plain $name (toString $value) }}{{ end }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.existingSecret }}
      key: {{ $v.database.secretKey }}
# POD_NAME names this instance in Events and in the Lease; POD_NAMESPACE is where the Lease lives.
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- range $name := keys $plain | sortAlpha }}
- name: {{ $name }}
  value: {{ get $plain $name | quote }}
{{- end }}
{{- with $v.operator.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "latchkey.topologySpread" -}}
{{- $ts := index . 0 }}
{{- $selector := index . 1 }}
{{- if $ts.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $ts.maxSkew }}
    topologyKey: {{ $ts.topologyKey }}
    whenUnsatisfiable: {{ $ts.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- $selector | nindent 8 }}
{{- end }}
{{- end }}
