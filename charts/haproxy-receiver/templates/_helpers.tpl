{{/* Names, labels and the rendered TOML configuration shared by every template. */}}

{{- define "haproxy-receiver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "haproxy-receiver.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "haproxy-receiver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "haproxy-receiver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Kafka worker tier's pods (templates/workers.yaml): a name of their own, so nothing
that selects the receivers selects them. */}}
{{- define "haproxy-receiver.workerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "haproxy-receiver.name" . }}-worker
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "haproxy-receiver.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "haproxy-receiver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "haproxy-receiver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "haproxy-receiver.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "haproxy-receiver.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Whether plain (unencrypted) TCP syslog is served. */}}
{{- define "haproxy-receiver.plainTcp" -}}
{{- if or (not .Values.tls.enabled) .Values.tls.plainTcp -}}true{{- end -}}
{{- end -}}

{{/*
The settings as a dict of sections: the user's `config` plus what the chart owns (binds on
0.0.0.0, the spool on the volume, Elasticsearch hosts, TLS files). Keys the chart owns are
refused in `config` so the two never disagree.
*/}}
{{- define "haproxy-receiver.settings" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $owned := dict "listen" (list "udp" "tcp" "tls" "tls_cert" "tls_key" "tls_client_ca") "metrics" (list "listen") "spool" (list "dir") "elasticsearch" (list "hosts" "ca_file" "password" "api_key") -}}
{{- if .Values.geoip.enabled -}}
{{- $_ := set $owned "parse" (list "geoip_database" "asn_database") -}}
{{- end -}}
{{- range $section, $keys := $owned -}}
{{- $values := get $cfg $section | default dict -}}
{{- range $key := $keys -}}
{{- if hasKey $values $key -}}
{{- fail (printf "config.%s.%s is set by the chart; use the chart's values (ports, tls, elasticsearch, persistence) instead" $section $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $listen := get $cfg "listen" | default dict -}}
{{- $_ := set $listen "udp" (list (printf "0.0.0.0:%v" .Values.ports.syslog)) -}}
{{- if include "haproxy-receiver.plainTcp" . -}}
{{- $_ := set $listen "tcp" (list (printf "0.0.0.0:%v" .Values.ports.syslog)) -}}
{{- else -}}
{{- $_ := set $listen "tcp" list -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $listen "tls" (list (printf "0.0.0.0:%v" .Values.tls.port)) -}}
{{- if not .Values.tls.secretName -}}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- $_ := set $listen "tls_cert" "/etc/haproxy-receiver/tls/tls.crt" -}}
{{- $_ := set $listen "tls_key" "/etc/haproxy-receiver/tls/tls.key" -}}
{{- if .Values.tls.clientCASecret -}}
{{- $_ := set $listen "tls_client_ca" "/etc/haproxy-receiver/client-ca/ca.crt" -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- $metrics := get $cfg "metrics" | default dict -}}
{{- $_ := set $metrics "listen" (printf "0.0.0.0:%v" .Values.ports.metrics) -}}
{{- $_ := set $cfg "metrics" $metrics -}}
{{- $spool := get $cfg "spool" | default dict -}}
{{- $_ := set $spool "dir" "/var/lib/haproxy-receiver/spool" -}}
{{- $_ := set $cfg "spool" $spool -}}
{{- $es := get $cfg "elasticsearch" | default dict -}}
{{- $_ := set $es "hosts" (.Values.elasticsearch.hosts | default list) -}}
{{- if .Values.elasticsearch.username -}}
{{- $_ := set $es "username" .Values.elasticsearch.username -}}
{{- end -}}
{{- if .Values.elasticsearch.caSecret -}}
{{- $_ := set $es "ca_file" "/etc/haproxy-receiver/es-ca/ca.crt" -}}
{{- end -}}
{{- $_ := set $cfg "elasticsearch" $es -}}
{{- if .Values.geoip.enabled -}}
{{- $parse := get $cfg "parse" | default dict -}}
{{- if .Values.geoip.cityFile -}}
{{- $_ := set $parse "geoip_database" (printf "%s/%s" (trimSuffix "/" .Values.geoip.mountPath) .Values.geoip.cityFile) -}}
{{- end -}}
{{- if .Values.geoip.asnFile -}}
{{- $_ := set $parse "asn_database" (printf "%s/%s" (trimSuffix "/" .Values.geoip.mountPath) .Values.geoip.asnFile) -}}
{{- end -}}
{{- $_ := set $cfg "parse" $parse -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/*
The volume holding the MaxMind databases: exactly one of a PersistentVolumeClaim, a Secret or
a ConfigMap. Secrets and ConfigMaps stop at 1 MiB (etcd's object limit), which fits small
Country or ASN databases only; GeoLite2-City (~70 MB) needs a claim, e.g. one kept current by
a geoipupdate CronJob.
*/}}
{{- define "haproxy-receiver.geoipVolume" -}}
{{- $g := .Values.geoip -}}
{{- $sources := compact (list $g.existingClaim $g.secretName $g.configMapName) -}}
{{- if ne (len $sources) 1 -}}
{{- fail "geoip.enabled needs exactly one of geoip.existingClaim, geoip.secretName, geoip.configMapName" -}}
{{- end -}}
{{- if not (or $g.cityFile $g.asnFile) -}}
{{- fail "geoip.enabled needs geoip.cityFile or geoip.asnFile (a file name in the volume)" -}}
{{- end -}}
{{- if $g.existingClaim -}}
persistentVolumeClaim:
  claimName: {{ $g.existingClaim }}
  readOnly: true
{{- else if $g.secretName -}}
secret:
  secretName: {{ $g.secretName }}
{{- else -}}
configMap:
  name: {{ $g.configMapName }}
{{- end -}}
{{- end -}}

{{/*
One TOML value. JSON strings, numbers, booleans and arrays are valid TOML as they are;
tables become TOML inline tables.
*/}}
{{- define "haproxy-receiver.tomlValue" -}}
{{- if kindIs "map" . -}}
{{- $items := list -}}
{{- range $k, $v := . -}}
{{- $items = append $items (printf "%s = %s" (toJson (toString $k)) (toJson $v)) -}}
{{- end -}}
{ {{- join ", " $items -}} }
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{- define "haproxy-receiver.configToml" -}}
# Rendered by the haproxy-receiver chart from its values; see `haproxy-receiver config-reference`.
{{- $settings := include "haproxy-receiver.settings" . | fromJson }}
{{- range $section, $values := $settings }}

[{{ $section }}]
{{- range $key, $value := $values }}
{{ $key }} = {{ include "haproxy-receiver.tomlValue" $value }}
{{- end }}
{{- end }}
{{ end -}}
