{{/*
Checks across values that values.schema.json cannot express. Included by the service
Deployment, so every render (install, upgrade, template, lint) runs it. Each failure
names the values to change.
*/}}
{{- define "latchkey.validate" -}}
{{- $v := .Values }}
{{- $ttl := include "latchkey.seconds" $v.service.accessTokenTTL | int64 }}
{{- if or (lt $ttl 60) (gt $ttl 86400) }}
{{- fail (printf "service.accessTokenTTL (%s) must be between 60s and 24h: the service refuses to start otherwise" (toString $v.service.accessTokenTTL)) }}
{{- end }}
{{- if and $v.operator.enabled $v.operator.leaderElection.enabled (lt (include "latchkey.seconds" $v.operator.leaderElection.leaseDuration | int64) 2) }}
{{- fail (printf "operator.leaderElection.leaseDuration (%s) must be at least 2s: the operator refuses to start otherwise" (toString $v.operator.leaderElection.leaseDuration)) }}
{{- end }}
{{- if and (ne (toString $v.service.pruneInterval) "off") (lt (include "latchkey.seconds" $v.service.pruneInterval | int64) 1) }}
{{- fail (printf "service.pruneInterval (%s) must be at least 1s, or off: the service refuses to start otherwise" (toString $v.service.pruneInterval)) }}
{{- end }}
{{- if eq (int $v.metrics.port) 8080 }}
{{- fail "metrics.port must not be 8080: that is the API's port, and /metrics is served apart from the API" }}
{{- end }}
{{- if $v.signingKey.create }}
{{- if ge (include "latchkey.seconds" $v.signingKey.prePublish | int64) (include "latchkey.seconds" $v.signingKey.rotationInterval | int64) }}
{{- fail (printf "signingKey.prePublish (%s) must be shorter than signingKey.rotationInterval (%s): a new key is published prePublish before the active one has signed for rotationInterval" (toString $v.signingKey.prePublish) (toString $v.signingKey.rotationInterval)) }}
{{- end }}
{{- $retain := include "latchkey.seconds" $v.signingKey.retainAfterRetire | int64 }}
{{- $reload := include "latchkey.seconds" $v.service.keysReloadInterval | int64 }}
{{- $need := add $ttl $reload 5 }}
{{- if lt $retain $need }}
{{- fail (printf "signingKey.retainAfterRetire (%s = %ds) must be at least service.accessTokenTTL + service.keysReloadInterval + 5 s of clock skew (%ds): a retired key must stay in JWKS until the last token it signed has expired, or those tokens fail verification early" (toString $v.signingKey.retainAfterRetire) $retain $need) }}
{{- end }}
{{- $prePublish := include "latchkey.seconds" $v.signingKey.prePublish | int64 }}
{{- $maxAge := include "latchkey.seconds" $v.service.jwksMaxAge | int64 }}
{{- if ge $maxAge $prePublish }}
{{- fail (printf "service.jwksMaxAge (%s) must be shorter than signingKey.prePublish (%s): a verifier caching the JWKS for max-age must see a new key before it signs" (toString $v.service.jwksMaxAge) (toString $v.signingKey.prePublish)) }}
{{- end }}
{{- end }}
{{- $stopping := add (int $v.service.preStopSleepSeconds) (include "latchkey.seconds" $v.service.shutdownDrain | int64) }}
{{- if ge $stopping (int64 $v.service.terminationGracePeriodSeconds) }}
{{- fail (printf "service.preStopSleepSeconds (%d) + service.shutdownDrain (%s) must stay below service.terminationGracePeriodSeconds (%d): the kubelet kills the pod at the end of the grace period, with requests still in flight" (int $v.service.preStopSleepSeconds) (toString $v.service.shutdownDrain) (int $v.service.terminationGracePeriodSeconds)) }}
{{- end }}
{{- $multi := or (gt (int $v.service.replicas) 1) $v.service.autoscaling.enabled }}
{{- if and $multi (not $v.redis.enabled) }}
{{- fail "redis.enabled=true (with redis.existingSecret holding REDIS_URL) is required when service.replicas > 1 or service.autoscaling.enabled=true: without Redis every replica keeps its own token revocation list, rate limits and lockout counters, so a logout on one replica is not seen by the others. Set --set redis.enabled=true,redis.existingSecret=<secret>, or run one replica." }}
{{- end }}
{{- if and $v.service.autoscaling.enabled (gt (int $v.service.autoscaling.minReplicas) (int $v.service.autoscaling.maxReplicas)) }}
{{- fail (printf "service.autoscaling.minReplicas (%d) must not exceed service.autoscaling.maxReplicas (%d)" (int $v.service.autoscaling.minReplicas) (int $v.service.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and $v.operator.enabled (gt (int $v.operator.replicas) 1) (not $v.operator.leaderElection.enabled) }}
{{- fail "operator.leaderElection.enabled=false needs operator.replicas=1: several operators without a leader race on key rotation" }}
{{- end }}
{{- if and (not $v.signingKey.create) (not $v.signingKey.secretName) }}
{{- fail "signingKey.create=false needs signingKey.secretName: the Secret of your own SigningKey, which the service mounts as its key directory" }}
{{- end }}
{{- $watch := include "latchkey.operator.watchNamespace" . }}
{{- if and $v.operator.enabled $watch (ne $watch .Release.Namespace) $v.signingKey.create }}
{{- fail (printf "operator.watchNamespace=%q does not include the release namespace %q, where the chart's SigningKey and the service pods live: the operator would never write the signing keys. Set operator.watchNamespace to %q or signingKey.create=false" $watch .Release.Namespace .Release.Namespace) }}
{{- end }}
{{- range $name := list "DATABASE_URL" "REDIS_URL" "SMTP_URL" }}
{{- if hasKey $v.service.env $name }}
{{- fail (printf "service.env.%s is not allowed: credentials come from existing Secrets only (database.existingSecret, redis.existingSecret, smtp.existingSecret)" $name) }}
{{- end }}
{{- end }}
{{- if hasKey $v.operator.env "DATABASE_URL" }}
{{- fail "operator.env.DATABASE_URL is not allowed: the operator reads DATABASE_URL from database.existingSecret" }}
{{- end }}
{{- if and $v.networkPolicy.enabled $v.networkPolicy.egress.restrict }}
{{- $e := $v.networkPolicy.egress }}
{{- if not $e.postgres.cidrs }}
{{- fail "networkPolicy.egress.restrict=true needs networkPolicy.egress.postgres.cidrs (the CIDRs of PostgreSQL), or the pods cannot reach their database" }}
{{- end }}
{{- if and $v.redis.enabled (not $e.redis.cidrs) }}
{{- fail "networkPolicy.egress.restrict=true with redis.enabled=true needs networkPolicy.egress.redis.cidrs (the CIDRs of Redis)" }}
{{- end }}
{{- if and $v.smtp.enabled (not $e.smtp.cidrs) }}
{{- fail "networkPolicy.egress.restrict=true with smtp.enabled=true needs networkPolicy.egress.smtp.cidrs (the CIDRs of the SMTP server)" }}
{{- end }}
{{- if and $v.operator.enabled (not $e.apiServer.cidrs) }}
{{- fail "networkPolicy.egress.restrict=true needs networkPolicy.egress.apiServer.cidrs (the Kubernetes API server endpoints: kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes), or the operator cannot reach the API" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A duration value ("900", "90s", "15m", "1h", "14d"; the schema checks the shape) in
seconds.
*/}}
{{- define "latchkey.seconds" -}}
{{- $s := toString . -}}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 -}}
{{- $unit := substr (int (sub (len $s) 1)) (len $s) $s -}}
{{- if hasKey $units $unit -}}
{{- mul (trimSuffix $unit $s | int64) (get $units $unit) -}}
{{- else -}}
{{- $s | int64 -}}
{{- end -}}
{{- end -}}
