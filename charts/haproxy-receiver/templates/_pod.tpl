{{/* The pod template shared by the StatefulSet and the DaemonSet. */}}
{{- define "haproxy-receiver.podTemplate" -}}
metadata:
  labels:
    {{- include "haproxy-receiver.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A changed configuration rolls the pods.
    checksum/config: {{ include "haproxy-receiver.configToml" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "haproxy-receiver.serviceAccountName" . }}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- if eq .Values.mode "daemonset" }}
  initContainers:
    # A hostPath directory is created root-owned and fsGroup does not apply to it: hand it to
    # the receiver's user once, with only the CHOWN capability.
    - name: spool-owner
      image: {{ include "haproxy-receiver.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: ["chown", "{{ .Values.podSecurityContext.runAsUser }}:{{ .Values.podSecurityContext.runAsGroup }}", "/var/lib/haproxy-receiver"]
      securityContext:
        runAsUser: 0
        runAsNonRoot: false
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: [ALL]
          add: [CHOWN]
      volumeMounts:
        - name: spool
          mountPath: /var/lib/haproxy-receiver
  {{- end }}
  containers:
    - name: receiver
      image: {{ include "haproxy-receiver.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: ["haproxy-receiver", "run", "--config", "/etc/haproxy-receiver/config.toml"]
      env:
        {{- include "haproxy-receiver.outputEnv" . | nindent 8 }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: syslog-udp
          containerPort: {{ .Values.ports.syslog }}
          protocol: UDP
          {{- if and (eq .Values.mode "daemonset") .Values.daemonset.hostPorts }}
          hostPort: {{ .Values.ports.syslog }}
          {{- end }}
        {{- if include "haproxy-receiver.plainTcp" . }}
        - name: syslog-tcp
          containerPort: {{ .Values.ports.syslog }}
          protocol: TCP
          {{- if and (eq .Values.mode "daemonset") .Values.daemonset.hostPorts }}
          hostPort: {{ .Values.ports.syslog }}
          {{- end }}
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: syslog-tls
          containerPort: {{ .Values.tls.port }}
          protocol: TCP
          {{- if and (eq .Values.mode "daemonset") .Values.daemonset.hostPorts }}
          hostPort: {{ .Values.tls.port }}
          {{- end }}
        {{- end }}
        - name: metrics
          containerPort: {{ .Values.ports.metrics }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        # 503 while the spool cannot be written: the Service stops sending new streams here.
        httpGet:
          path: /readyz
          port: metrics
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/haproxy-receiver/config.toml
          subPath: config.toml
          readOnly: true
        - name: spool
          mountPath: /var/lib/haproxy-receiver
        - name: tmp
          mountPath: /tmp
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/haproxy-receiver/tls
          readOnly: true
        {{- if .Values.tls.clientCASecret }}
        - name: client-ca
          mountPath: /etc/haproxy-receiver/client-ca
          readOnly: true
        {{- end }}
        {{- end }}
        {{- if .Values.elasticsearch.caSecret }}
        - name: es-ca
          mountPath: /etc/haproxy-receiver/es-ca
          readOnly: true
        {{- end }}
        {{- if .Values.geoip.enabled }}
        - name: geoip
          mountPath: {{ .Values.geoip.mountPath }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "haproxy-receiver.fullname" . }}
    - name: tmp
      emptyDir: {}
    {{- if eq .Values.mode "daemonset" }}
    - name: spool
      hostPath:
        path: {{ .Values.daemonset.spoolHostPath }}
        type: DirectoryOrCreate
    {{- else if not .Values.persistence.enabled }}
    - name: spool
      emptyDir: {}
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.secretName }}
    {{- if .Values.tls.clientCASecret }}
    - name: client-ca
      secret:
        secretName: {{ .Values.tls.clientCASecret }}
    {{- end }}
    {{- end }}
    {{- if .Values.elasticsearch.caSecret }}
    - name: es-ca
      secret:
        secretName: {{ .Values.elasticsearch.caSecret }}
    {{- end }}
    {{- if .Values.geoip.enabled }}
    - name: geoip
      {{- include "haproxy-receiver.geoipVolume" . | nindent 6 }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}


{{/* The Elasticsearch credentials from the Secret, as environment variables: receivers and
workers alike. */}}
{{- define "haproxy-receiver.outputEnv" -}}
{{- $es := .Values.elasticsearch }}
{{- if and $es.existingSecret $es.usernameKey (not $es.username) }}
- name: HAPROXY_RECEIVER_ELASTICSEARCH__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $es.existingSecret }}
      key: {{ $es.usernameKey }}
{{- end }}
{{- if and $es.existingSecret $es.passwordKey }}
- name: HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $es.existingSecret }}
      key: {{ $es.passwordKey }}
{{- end }}
{{- if and $es.existingSecret $es.apiKeyKey }}
- name: HAPROXY_RECEIVER_ELASTICSEARCH__API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $es.existingSecret }}
      key: {{ $es.apiKeyKey }}
{{- end }}
{{- end -}}
