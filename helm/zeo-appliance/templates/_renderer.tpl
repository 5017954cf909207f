{{/*
The pod template shared by the renderer and the read-only renderer
Deployments. Call with
  (dict "ctx" $ "component" "renderer" "readOnly" false "extraEnv" list "resources" map)
*/}}
{{- define "zeo-appliance.rendererPodTemplate" -}}
{{- $ := .ctx }}
{{- $r := $.Values.renderer }}
{{- $ctx := dict "ctx" $ "component" .component }}
{{- $sharedBlobs := eq $.Values.blobs.mode "shared" }}
metadata:
  labels:
    {{- include "zeo-appliance.labels" $ctx | nindent 4 }}
    {{- with $r.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := deepCopy $r.podAnnotations }}
  {{- if $r.config.rollOnChange }}
  {{- $_ := set $annotations "checksum/config" (include (print $.Template.BasePath "/renderer-configmap.yaml") $ | sha256sum) }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "zeo-appliance.serviceAccountName" $ }}
  automountServiceAccountToken: false
  # Service links would put <SERVICE>_PORT=tcp://... variables into the
  # environment, next to the ZEO_* and ZEOD_* names zeod init reads.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $r.terminationGracePeriodSeconds }}
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $r.podSecurityContext | nindent 4 }}
  {{- if and $.Values.bootstrap.enabled (not .readOnly) }}
  initContainers:
    # Creates the Zope root object once, before Zope starts: two renderers
    # starting together on an empty storage would otherwise both try and
    # one would die of a ConflictError.
    - name: bootstrap
      image: {{ include "zeo-appliance.image" (dict "ctx" $ "image" $r.image) }}
      imagePullPolicy: {{ $r.image.pullPolicy }}
      args:
        {{- toYaml $.Values.bootstrap.command | nindent 8 }}
      env:
        {{- include "zeo-appliance.rendererEnv" . | nindent 8 }}
        # A one-shot run: nothing to watch or reload.
        - name: ZEOD_INIT_WATCH
          value: "false"
        {{- with $.Values.bootstrap.adminPasswordSecret.name }}
        - name: ZEOD_ADMIN_USER
          value: {{ $.Values.bootstrap.adminUser | quote }}
        - name: ZEOD_ADMIN_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.bootstrap.adminPasswordSecret.key }}
        {{- end }}
      {{- with $.Values.bootstrap.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $r.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "zeo-appliance.rendererMounts" (merge (dict "bootstrap" true) .) | nindent 8 }}
  {{- end }}
  containers:
    - name: zope
      image: {{ include "zeo-appliance.image" (dict "ctx" $ "image" $r.image) }}
      imagePullPolicy: {{ $r.image.pullPolicy }}
      env:
        {{- include "zeo-appliance.rendererEnv" . | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ $r.httpPort }}
          protocol: TCP
      startupProbe:
        httpGet:
          path: {{ $r.probes.path }}
          port: http
        periodSeconds: {{ $r.probes.startup.periodSeconds }}
        timeoutSeconds: 5
        failureThreshold: {{ $r.probes.startup.failureThreshold }}
      readinessProbe:
        httpGet:
          path: {{ $r.probes.path }}
          port: http
        periodSeconds: {{ $r.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $r.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $r.probes.readiness.failureThreshold }}
      livenessProbe:
        httpGet:
          path: {{ $r.probes.livenessPath }}
          port: http
        periodSeconds: {{ $r.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $r.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $r.probes.liveness.failureThreshold }}
      {{- with .resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $r.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "zeo-appliance.rendererMounts" . | nindent 8 }}
  volumes:
    # Mounted as a directory, never with subPath: Kubernetes updates a
    # ConfigMap volume by swapping a symlink, which zeod init watches for.
    # The root filesystem is read-only; emptyDirs hold what Zope writes:
    # etc/ (zope.conf and zope.ini, rendered by zeod init), var/cache/
    # (Chameleon's), the ZEO client cache under /data, and the blob cache
    # when blobs are streamed.
    - name: config
      configMap:
        name: {{ include "zeo-appliance.rendererConfigMapName" $ }}
    - name: etc
      emptyDir:
        sizeLimit: 16Mi
    - name: chameleon-cache
      emptyDir:
        sizeLimit: 256Mi
    - name: data
      emptyDir:
        sizeLimit: 2Gi
    - name: tmp
      emptyDir:
        sizeLimit: 2Gi
    {{- if $sharedBlobs }}
    - name: blobs
      persistentVolumeClaim:
        claimName: {{ include "zeo-appliance.blobsClaimName" $ }}
    {{- else }}
    - name: blobs
      emptyDir:
        sizeLimit: {{ $.Values.blobs.cacheSizeLimit }}
    {{- end }}
    {{- if eq $r.products.source "volume" }}
    - name: products
      persistentVolumeClaim:
        claimName: {{ include "zeo-appliance.productsClaimName" $ }}
    {{- end }}
  {{- with $r.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
The renderer environment: where the storage is, in the names the plone
images use. Settings that differ between renderers and read-only renderers
or follow from the chart's topology live here; tunables live in the
ConfigMap, so that changing them reloads pods in place.
*/}}
{{- define "zeo-appliance.rendererEnv" -}}
{{- $ := .ctx }}
- name: ZEOD_INIT_CONFIG
  value: {{ printf "%s/zeod-init.yaml" $.Values.renderer.config.mountPath }}
- name: ZEO_ADDRESS
  value: {{ include "zeo-appliance.zeoAddress" $ | quote }}
- name: ZEO_STORAGE
  value: "1"
- name: ZEO_READ_ONLY
  value: {{ .readOnly | quote }}
- name: ZEO_SHARED_BLOB_DIR
  value: {{ eq $.Values.blobs.mode "shared" | quote }}
- name: LISTEN_PORT
  value: {{ $.Values.renderer.httpPort | quote }}
{{- with .extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "zeo-appliance.rendererMounts" -}}
{{- $ := .ctx }}
- name: config
  mountPath: {{ $.Values.renderer.config.mountPath }}
  readOnly: true
- name: etc
  mountPath: /app/etc
# Chameleon's template cache (CHAMELEON_CACHE in zope.conf): it must exist.
- name: chameleon-cache
  mountPath: /app/var/cache
- name: data
  mountPath: /data
- name: blobs
  mountPath: /data/blobstorage
- name: tmp
  mountPath: /tmp
{{- if eq $.Values.renderer.products.source "volume" }}
# Read-only for Zope; the bootstrap writes the image's add-ons onto it.
- name: products
  mountPath: {{ $.Values.renderer.products.mountPath }}
  {{- if not .bootstrap }}
  readOnly: true
  {{- end }}
{{- end }}
{{- end }}
