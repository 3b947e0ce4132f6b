{{/* One egress rule per destination with CIDRs: ports and ipBlocks. Argument: dict "cidrs" "ports". */}}
{{- define "latchkey.networkPolicy.cidrRule" -}}
{{- if .cidrs }}
- to:
  {{- range .cidrs }}
    - ipBlock:
        cidr: {{ . }}
  {{- end }}
  ports:
  {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* DNS egress (UDP and TCP 53). */}}
{{- define "latchkey.networkPolicy.dnsRule" -}}
- to:
    {{- toYaml .Values.networkPolicy.egress.dns.to | nindent 4 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
