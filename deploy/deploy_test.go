// Package deploy_test checks the deployment examples against Caddyfile.example: the YAML parses,
// and the probe paths and ports are the ones the example serves.
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exampleDefault returns the default of {$NAME:default} in Caddyfile.example.
func exampleDefault(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`\{\$` + name + `:([^}]*)\}`).FindStringSubmatch(read(t, "../Caddyfile.example"))
	if m == nil {
		t.Fatalf("Caddyfile.example has no {$%s:default}", name)
	}
	return m[1]
}

// The monitoring mount and routes of Caddyfile.example.
const (
	mount        = "/api/monitoring/"
	simpleHealth = mount + "simple-health"
	live         = mount + "live"
	ready        = mount + "ready"
)

func TestExampleServesTheProbedPaths(t *testing.T) {
	ex := read(t, "../Caddyfile.example")
	if !strings.Contains(ex, "handle_path "+mount+"* {") {
		t.Fatalf("Caddyfile.example does not mount monitoring at %s*", mount)
	}
	if !strings.Contains(ex, "http://:{$HTTP_PORT:") {
		t.Fatal("Caddyfile.example's plain-HTTP site must answer any host name (probes use the pod address)")
	}
}

func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(read(t, path))))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestKubernetesProbesMatchExample(t *testing.T) {
	httpPort := exampleDefault(t, "HTTP_PORT")
	for _, file := range []string{"kubernetes.yaml", "k8s-probes.yaml"} {
		docs := yamlDocs(t, file)
		var dep map[string]any
		for _, d := range docs {
			if d["kind"] == "Deployment" {
				dep = d
			}
		}
		if dep == nil {
			t.Fatalf("%s: no Deployment", file)
		}
		c := dig(dep, "spec", "template", "spec", "containers", 0)
		ports := map[string]string{}
		for _, p := range dig(c, "ports").([]any) {
			ports[dig(p, "name").(string)] = strings.TrimSpace(strings.Trim(yamlString(dig(p, "containerPort")), `"`))
		}
		if ports["http"] != httpPort {
			t.Errorf("%s: containerPort http %s, Caddyfile.example HTTP_PORT %s", file, ports["http"], httpPort)
		}
		for probe, path := range map[string]string{"livenessProbe": live, "readinessProbe": ready, "startupProbe": live} {
			if got := dig(c, probe, "httpGet", "path"); got != path {
				t.Errorf("%s: %s path %v, want %s", file, probe, got, path)
			}
			if got := dig(c, probe, "httpGet", "port"); got != "http" {
				t.Errorf("%s: %s port %v, want the http port", file, probe, got)
			}
		}
		if file == "kubernetes.yaml" {
			env := map[string]string{}
			for _, e := range dig(c, "env").([]any) {
				if v, ok := dig(e, "value").(string); ok {
					env[dig(e, "name").(string)] = v
				}
			}
			if env["HTTP_PORT"] != ports["http"] || env["BIND_ADDR"] != "0.0.0.0" {
				t.Errorf("%s: HTTP_PORT %q (container port %s), BIND_ADDR %q", file, env["HTTP_PORT"], ports["http"], env["BIND_ADDR"])
			}
			// Behind the ingress every client would be its address (one scanner bans them
			// all), and without a delay SIGTERM refuses connections at once.
			if env["TRUSTED_PROXIES"] == "" || env["SHUTDOWN_DELAY"] == "" {
				t.Errorf("%s: TRUSTED_PROXIES %q, SHUTDOWN_DELAY %q: both must be set", file, env["TRUSTED_PROXIES"], env["SHUTDOWN_DELAY"])
			}
			drainFits(t, file, env["SHUTDOWN_DELAY"], env["GRACE_PERIOD"], terminationGrace(t, file, dep))
		} else {
			// The probes' file states the global options its timing assumes.
			text := read(t, file)
			delay := regexp.MustCompile("`shutdown_delay (\\S+)`").FindStringSubmatch(text)
			grace := regexp.MustCompile("`grace_period (\\S+)`").FindStringSubmatch(text)
			if delay == nil || grace == nil {
				t.Fatalf("%s does not state its shutdown_delay and grace_period", file)
			}
			drainFits(t, file, delay[1], grace[1], terminationGrace(t, file, dep))
		}
	}
}

func terminationGrace(t *testing.T, file string, dep map[string]any) time.Duration {
	t.Helper()
	s, ok := dig(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
	if !ok {
		t.Fatalf("%s: no terminationGracePeriodSeconds (the default, 30 s, is not stated)", file)
	}
	return time.Duration(s) * time.Second
}

// drainFits fails unless Caddy, stopped with this shutdown_delay and grace_period, exits before
// the platform's stop timeout: past it the platform kills Caddy with requests in flight. A
// grace_period of 0 (Caddy's default) is eternal: one streaming response keeps Caddy running
// until the kill.
func drainFits(t *testing.T, where, delay, grace string, stop time.Duration) {
	t.Helper()
	d, errD := time.ParseDuration(delay)
	g, errG := time.ParseDuration(grace)
	switch {
	case errD != nil || errG != nil:
		t.Errorf("%s: shutdown_delay %q, grace_period %q: want durations", where, delay, grace)
	case g <= 0:
		t.Errorf("%s: grace_period %q is eternal: a streaming response keeps Caddy from exiting until the platform kills it", where, grace)
	case d+g >= stop:
		t.Errorf("%s: shutdown_delay %s + grace_period %s is not below the stop timeout %s", where, d, g, stop)
	}
}

// TestDrainingFitsTheStopTimeouts: every deployment that runs Caddyfile.example gives it a
// shutdown_delay + grace_period below its platform's stop timeout (Kubernetes above).
func TestDrainingFitsTheStopTimeouts(t *testing.T) {
	delay, grace := exampleDefault(t, "SHUTDOWN_DELAY"), exampleDefault(t, "GRACE_PERIOD")

	// systemd: caddy.env is made from .env.example.
	env := envFile(t, "../.env.example")
	stop, err := time.ParseDuration(unitKeys(t)["[Service]TimeoutStopSec"][0])
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	drainFits(t, "caddy-hardening.service with .env.example", env["SHUTDOWN_DELAY"], env["GRACE_PERIOD"], stop)

	// Docker: the usage line's --stop-timeout (docker stop's default is 10 s); the image sets
	// neither variable, so the example's defaults apply.
	df := read(t, "Dockerfile")
	m := regexp.MustCompile(`docker run .*--stop-timeout (\d+)`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("the Dockerfile's docker run line has no --stop-timeout")
	}
	if strings.Contains(df, "SHUTDOWN_DELAY=") || strings.Contains(df, "GRACE_PERIOD=") {
		t.Fatal("the Dockerfile sets SHUTDOWN_DELAY or GRACE_PERIOD: check them here instead of the example's defaults")
	}
	secs, _ := strconv.Atoi(m[1])
	drainFits(t, "Dockerfile (docker run --stop-timeout)", delay, grace, time.Duration(secs)*time.Second)

	// Render: maxShutdownDelaySeconds; the blueprint sets neither variable.
	svc := dig(yamlDocs(t, "render.yaml")[0], "services", 0)
	for _, e := range dig(svc, "envVars").([]any) {
		if k := dig(e, "key"); k == "SHUTDOWN_DELAY" || k == "GRACE_PERIOD" {
			t.Fatalf("render.yaml sets %s: check it here instead of the example's default", k)
		}
	}
	max, ok := dig(svc, "maxShutdownDelaySeconds").(int)
	if !ok {
		t.Fatal("render.yaml: no maxShutdownDelaySeconds")
	}
	drainFits(t, "render.yaml", delay, grace, time.Duration(max)*time.Second)
}

func yamlString(v any) string {
	b, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(b))
}

func TestRenderBlueprint(t *testing.T) {
	docs := yamlDocs(t, "render.yaml")
	if len(docs) != 1 {
		t.Fatalf("render.yaml: %d documents", len(docs))
	}
	svc := dig(docs[0], "services", 0)
	if got := dig(svc, "healthCheckPath"); got != simpleHealth {
		t.Errorf("healthCheckPath %v, want %s", got, simpleHealth)
	}
	if got := dig(svc, "dockerfilePath"); got != "./deploy/Dockerfile" {
		t.Errorf("dockerfilePath %v", got)
	}
	vars := map[string]map[string]any{}
	group := ""
	for _, e := range dig(svc, "envVars").([]any) {
		m := e.(map[string]any)
		if g, ok := m["fromGroup"].(string); ok {
			group = g
			continue
		}
		vars[m["key"].(string)] = m
	}
	if group == "" || dig(docs[0], "envVarGroups", 0, "name") != group {
		t.Errorf("Redis settings must come from an environment group: fromGroup %q", group)
	}
	// Secrets are never written in the blueprint: entered in the dashboard or generated.
	for _, k := range []string{"CSP_NONCE_PLACEHOLDER", "DATABASE_URL"} {
		if _, literal := vars[k]["value"]; literal {
			t.Errorf("%s has a literal value", k)
		}
	}
	// Render's generateValue is standard base64 of 256 bits (44 characters, "=" at the end, "+"
	// and "/" in most), which inject_nonce placeholder refuses (templating engines escape that
	// punctuation): a generated placeholder made the service fail at start once the example's
	// inject_nonce line was uncommented.
	if vars["CSP_NONCE_PLACEHOLDER"]["generateValue"] == true {
		t.Error("CSP_NONCE_PLACEHOLDER is generateValue: Render generates base64 (+ / =), which inject_nonce placeholder refuses; enter a hex value in the dashboard (sync: false)")
	}
	for _, e := range dig(docs[0], "envVarGroups", 0, "envVars").([]any) {
		if _, literal := e.(map[string]any)["value"]; literal {
			t.Errorf("environment group var %v has a literal value", e)
		}
	}
	if vars["HTTP_PORT"]["value"] != "10000" || vars["BIND_ADDR"]["value"] != "0.0.0.0" {
		t.Errorf("Render sends traffic to port 10000 on any interface: HTTP_PORT %v BIND_ADDR %v", vars["HTTP_PORT"]["value"], vars["BIND_ADDR"]["value"])
	}
}

func TestDockerfile(t *testing.T) {
	df := read(t, "Dockerfile")
	httpPort := exampleDefault(t, "HTTP_PORT")
	for _, want := range []string{
		"FROM caddy:${CADDY_VERSION}-builder AS builder",
		"xcaddy build v${CADDY_VERSION}",
		"--with github.com/swarmsec/caddy-hardening@v0.0.0=/src", // as xcaddy.md and CI
		"HTTP_PORT=" + httpPort,
		"EXPOSE " + httpPort,
		// The port the server listens on at run time: render.yaml runs this image with
		// HTTP_PORT 10000, docker run -e HTTP_PORT=... likewise.
		`HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
	CMD wget -qO- "http://127.0.0.1:${HTTP_PORT}` + live + `" || exit 1`,
		"caddy hardening check --config /etc/caddy/Caddyfile",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if !strings.Contains(read(t, "../.ci/run"), "build v2.11.9") || !strings.Contains(df, "CADDY_VERSION=2.11.9") {
		t.Error("the Dockerfile's Caddy version differs from CI's xcaddy build")
	}
}

// TestSecretsStayOutOfTheBuildContext: the Dockerfile copies the whole checkout into its builder
// stage (COPY . .), and its own header, like .env.example, has you fill a .env there with the
// secrets for `docker run --env-file .env`. Without a .dockerignore that .env (Redis password,
// CSP placeholder, database URL) went into a builder layer and the build cache; without a
// .gitignore entry, `git add .` committed it.
func TestSecretsStayOutOfTheBuildContext(t *testing.T) {
	lines := func(path string) []string {
		var out []string
		for _, l := range strings.Split(read(t, path), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
		return out
	}
	ignore := lines("../.dockerignore")
	if !slices.Contains(ignore, ".env") {
		t.Errorf(".dockerignore does not exclude .env: the Dockerfile's COPY . . puts its secrets in the builder stage; got %q", ignore)
	}
	if slices.Contains(ignore, ".env.example") || slices.Contains(ignore, "*") {
		t.Errorf(".dockerignore excludes what the build needs: %q", ignore)
	}
	if git := lines("../.gitignore"); !slices.Contains(git, "/.env") && !slices.Contains(git, ".env") {
		t.Errorf(".gitignore does not exclude .env (filled with secrets from .env.example); got %q", git)
	}
}

// TestImageRunsAsNonRoot: the image's final stage runs Caddy as an unprivileged user that owns
// Caddy's storage and config directories. It ran as root (the caddy base image's default): under
// `docker run` and Render, which keep the image's user, any code execution in Caddy was root in
// the container, although the example needs no privilege (ports 8080 and 8443).
func TestImageRunsAsNonRoot(t *testing.T) {
	df := read(t, "Dockerfile")
	final := df[strings.LastIndex(df, "\nFROM "):]
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(final, -1)
	if len(users) == 0 {
		t.Fatal("the Dockerfile's final stage has no USER: Caddy runs as root")
	}
	user := users[len(users)-1][1]
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Fatalf("the final stage runs as %q: want a numeric non-root UID (kubernetes.yaml's runAsNonRoot can only verify a numeric one)", user)
	}
	if !regexp.MustCompile(`(?m)^RUN chown -R ` + regexp.QuoteMeta(user) + ` /data /config$`).MatchString(final) {
		t.Errorf("the final stage does not give /data and /config to %s: Caddy could not write its storage or autosave", user)
	}
	k8s := dig(yamlDocs(t, "kubernetes.yaml")[0], "spec", "template", "spec", "securityContext", "runAsUser")
	if strconv.Itoa(k8s.(int)) != uid {
		t.Errorf("kubernetes.yaml runs as %v, the image as %s", k8s, uid)
	}
}

// TestImageStartsWithoutCapabilities: kubernetes.yaml drops every capability under
// allowPrivilegeEscalation false (no_new_privs). caddy:*-builder sets XCADDY_SETCAP=1, so
// xcaddy gives the binary cap_net_bind_service=+ep, COPY --from keeps it, and the kernel refuses
// to exec a file whose effective capability it cannot grant: the pod would never start
// ("exec /usr/bin/caddy: operation not permitted"). The example listens on high ports and needs
// no capability, so the image's binary must carry none.
func TestImageStartsWithoutCapabilities(t *testing.T) {
	c := dig(yamlDocs(t, "kubernetes.yaml")[0], "spec", "template", "spec", "containers", 0)
	drop, _ := dig(c, "securityContext", "capabilities", "drop").([]any)
	add, _ := dig(c, "securityContext", "capabilities", "add").([]any)
	if !slices.Contains(drop, any("ALL")) || slices.Contains(add, any("NET_BIND_SERVICE")) {
		t.Skip("kubernetes.yaml no longer drops every capability")
	}
	df := read(t, "Dockerfile")
	if !regexp.MustCompile(`(?m)^RUN XCADDY_SETCAP=0 xcaddy build `).MatchString(df) {
		t.Error("the Dockerfile's xcaddy build runs with the builder image's XCADDY_SETCAP=1: the binary gets cap_net_bind_service=+ep and cannot start in kubernetes.yaml's pod (capabilities drop ALL); build it with XCADDY_SETCAP=0")
	}
}

// TestKubernetesPodSecurityRestricted: the pod of kubernetes.yaml meets the Pod Security
// Standards' restricted profile, which a namespace labelled
// pod-security.kubernetes.io/enforce=restricted (and many clusters' defaults) requires of every
// pod it admits: without a seccomp profile the Deployment's pods were refused there ("violates
// PodSecurity restricted:latest: seccompProfile ... must set securityContext.seccompProfile.type
// to RuntimeDefault or Localhost"), although the README calls the pod non-root, without
// capabilities and with a read-only root file system.
func TestKubernetesPodSecurityRestricted(t *testing.T) {
	pod := dig(yamlDocs(t, "kubernetes.yaml")[0], "spec", "template", "spec")
	podSC := dig(pod, "securityContext")
	containers, _ := dig(pod, "containers").([]any)
	if len(containers) == 0 {
		t.Fatal("kubernetes.yaml: no containers in the Deployment's pod")
	}
	for _, f := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if dig(pod, f) == true {
			t.Errorf("kubernetes.yaml: the pod sets %s, which the restricted profile refuses", f)
		}
	}
	allowedVolumes := []string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
	vols, _ := dig(pod, "volumes").([]any)
	for _, v := range vols {
		for k := range v.(map[string]any) {
			if k != "name" && !slices.Contains(allowedVolumes, k) {
				t.Errorf("kubernetes.yaml: volume %v is of type %s, which the restricted profile refuses", dig(v, "name"), k)
			}
		}
	}
	// Each setting may be on the pod or on the container; the container's wins.
	setting := func(c any, path ...any) any {
		if v := dig(c, append([]any{"securityContext"}, path...)...); v != nil {
			return v
		}
		return dig(podSC, path...)
	}
	for _, c := range containers {
		name := dig(c, "name")
		if setting(c, "runAsNonRoot") != true {
			t.Errorf("kubernetes.yaml: container %v: runAsNonRoot is not true", name)
		}
		if uid, ok := setting(c, "runAsUser").(int); ok && uid == 0 {
			t.Errorf("kubernetes.yaml: container %v runs as user 0", name)
		}
		if dig(c, "securityContext", "allowPrivilegeEscalation") != false {
			t.Errorf("kubernetes.yaml: container %v: allowPrivilegeEscalation is not false", name)
		}
		if typ := setting(c, "seccompProfile", "type"); typ != "RuntimeDefault" && typ != "Localhost" {
			t.Errorf("kubernetes.yaml: container %v: seccompProfile.type is %v; the restricted profile needs RuntimeDefault or Localhost (on the pod or the container)", name, typ)
		}
		drop, _ := dig(c, "securityContext", "capabilities", "drop").([]any)
		if !slices.Contains(drop, any("ALL")) {
			t.Errorf("kubernetes.yaml: container %v does not drop ALL capabilities", name)
		}
		add, _ := dig(c, "securityContext", "capabilities", "add").([]any)
		for _, a := range add {
			if a != "NET_BIND_SERVICE" {
				t.Errorf("kubernetes.yaml: container %v adds capability %v; the restricted profile allows only NET_BIND_SERVICE", name, a)
			}
		}
	}
}

// TestKubernetesWritesOnlyMountedPaths: under readOnlyRootFilesystem every folder Caddy
// writes must be a writable volume: its storage and autosave.json, and the throwaway storage
// of `caddy hardening check`, which the README says to run where the runtime variables are set
// (kubectl exec into the pod: the secrets are there only). Before, the pod had no writable
// /tmp, and the check refused with check.temp_storage.
func TestKubernetesWritesOnlyMountedPaths(t *testing.T) {
	pod := dig(yamlDocs(t, "kubernetes.yaml")[0], "spec", "template", "spec")
	containers, _ := dig(pod, "containers").([]any)
	writableVolume := map[string]bool{}
	vols, _ := dig(pod, "volumes").([]any)
	for _, v := range vols {
		writableVolume[yamlString(dig(v, "name"))] = dig(v, "emptyDir") != nil || dig(v, "persistentVolumeClaim") != nil || dig(v, "ephemeral") != nil
	}
	for _, c := range containers {
		if dig(c, "securityContext", "readOnlyRootFilesystem") != true {
			continue
		}
		// The official Caddy image's ENV, which the container's env overrides.
		env := map[string]string{"XDG_DATA_HOME": "/data", "XDG_CONFIG_HOME": "/config", "TMPDIR": "/tmp"}
		list, _ := dig(c, "env").([]any)
		for _, e := range list {
			if v, ok := dig(e, "value").(string); ok {
				env[yamlString(dig(e, "name"))] = v
			}
		}
		var writable []string
		mounts, _ := dig(c, "volumeMounts").([]any)
		for _, m := range mounts {
			if writableVolume[yamlString(dig(m, "name"))] && dig(m, "readOnly") != true {
				writable = append(writable, yamlString(dig(m, "mountPath")))
			}
		}
		for what, dir := range readOnlyCaddyDirs(env, env["TMPDIR"], writable) {
			t.Errorf("kubernetes.yaml: container %v: %s is %s, read-only under readOnlyRootFilesystem (writable volumes: %v)", dig(c, "name"), what, dir, writable)
		}
	}
}

// TestXcaddyDocDockerfile: the Dockerfile snippet of xcaddy.md builds as deploy/Dockerfile
// does (Caddy 2.11.9 images, XCADDY_SETCAP=0, the checkout as v0.0.0). It used to run the
// builder's default XCADDY_SETCAP=1 from floating caddy:2.11 tags: an image built from it could
// not start in kubernetes.yaml's pod, which drops every capability.
func TestXcaddyDocDockerfile(t *testing.T) {
	m := regexp.MustCompile("(?s)```Dockerfile\n(.*?)```").FindStringSubmatch(read(t, "../xcaddy.md"))
	if m == nil {
		t.Fatal("xcaddy.md has no Dockerfile block")
	}
	snippet := m[1]
	for _, want := range []string{
		"FROM caddy:2.11.9-builder AS builder",
		"RUN XCADDY_SETCAP=0 xcaddy build v2.11.9 ",
		"--with github.com/swarmsec/caddy-hardening@v0.0.0=",
		"FROM caddy:2.11.9\n",
	} {
		if !strings.Contains(snippet, want) {
			t.Errorf("xcaddy.md's Dockerfile lacks %q:\n%s", want, snippet)
		}
	}
	if !strings.Contains(read(t, "Dockerfile"), "CADDY_VERSION=2.11.9") {
		t.Error("deploy/Dockerfile's Caddy version differs from xcaddy.md's")
	}
}

// unitKeys parses the systemd unit: "[Section]Key" -> its values, in order.
func unitKeys(t *testing.T) map[string][]string {
	t.Helper()
	section := ""
	keys := map[string][]string{}
	for i, line := range strings.Split(read(t, "caddy-hardening.service"), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("caddy-hardening.service:%d: %q is not key=value in a section", i+1, line)
			}
			keys[section+k] = append(keys[section+k], v)
		}
	}
	return keys
}

func TestSystemdUnit(t *testing.T) {
	keys := unitKeys(t)
	for _, k := range []string{"[Unit]Description", "[Service]ExecStart", "[Service]ExecStartPre", "[Service]User", "[Service]EnvironmentFile", "[Install]WantedBy"} {
		if len(keys[k]) == 0 {
			t.Errorf("unit lacks %s", k)
		}
	}
	if !strings.Contains(keys["[Service]ExecStartPre"][0], "hardening check") || keys["[Service]NoNewPrivileges"][0] != "true" {
		t.Error("the unit must check the configuration before start and run without new privileges")
	}
	if strings.Contains(keys["[Service]ExecStart"][0], "--environ") {
		t.Error("caddy run --environ prints the environment, secrets included, to the journal")
	}
}

// TestSystemdUnitWritesOnlyWritablePaths: under ProtectSystem=strict the whole file system is
// read-only but for the paths the unit opens; every folder Caddy writes must be one of them, or
// each start and reload logs an error (autosave.json in a read-only /etc/caddy) or fails (the
// storage, the check's throwaway storage in /tmp).
func TestSystemdUnitWritesOnlyWritablePaths(t *testing.T) {
	keys := unitKeys(t)
	if !slices.Contains(keys["[Service]ProtectSystem"], "strict") {
		t.Fatal("the unit no longer sets ProtectSystem=strict: revisit this test")
	}
	var writable []string
	for _, v := range keys["[Service]ReadWritePaths"] {
		writable = append(writable, strings.Fields(v)...)
	}
	for key, base := range map[string]string{"StateDirectory": "/var/lib/", "LogsDirectory": "/var/log/", "CacheDirectory": "/var/cache/", "RuntimeDirectory": "/run/"} {
		for _, v := range keys["[Service]"+key] {
			for _, d := range strings.Fields(v) {
				writable = append(writable, base+d)
			}
		}
	}
	env := map[string]string{}
	for _, v := range keys["[Service]Environment"] {
		for _, kv := range strings.Fields(v) {
			k, val, _ := strings.Cut(kv, "=")
			env[k] = val
		}
	}
	if env["XDG_DATA_HOME"] == "" || env["XDG_CONFIG_HOME"] == "" {
		t.Fatalf("the unit must set XDG_DATA_HOME and XDG_CONFIG_HOME (Environment=%v)", keys["[Service]Environment"])
	}
	tmp := "/tmp"
	if slices.Contains(keys["[Service]PrivateTmp"], "true") {
		writable = append(writable, tmp) // a private /tmp is writable
	}
	if env["TMPDIR"] != "" {
		tmp = env["TMPDIR"]
	}
	for what, dir := range readOnlyCaddyDirs(env, tmp, writable) {
		t.Errorf("%s is %s, read-only under ProtectSystem=strict (writable: %v)", what, dir, writable)
	}
}

// readOnlyCaddyDirs returns, of the folders Caddy writes (its storage and its config dir with
// autosave.json, from env's XDG variables, and the throwaway storage of `caddy hardening
// check` in tmp), those under none of the writable paths, by what they are.
func readOnlyCaddyDirs(env map[string]string, tmp string, writable []string) map[string]string {
	out := map[string]string{}
	for what, dir := range map[string]string{
		"Caddy's storage (XDG_DATA_HOME/caddy)":                     env["XDG_DATA_HOME"] + "/caddy",
		"Caddy's config dir, autosave.json (XDG_CONFIG_HOME/caddy)": env["XDG_CONFIG_HOME"] + "/caddy",
		"the check's throwaway storage (TMPDIR)":                    tmp,
	} {
		if !slices.ContainsFunc(writable, func(w string) bool { return dir == w || strings.HasPrefix(dir, strings.TrimSuffix(w, "/")+"/") }) {
			out[what] = dir
		}
	}
	return out
}

// TestEnvExample: every variable Caddyfile.example reads ({$VAR} and {env.VAR}) is listed in
// .env.example, and .env.example lists nothing else.
func TestEnvExample(t *testing.T) {
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\{(?:\$|env\.)([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(read(t, "../Caddyfile.example"), -1) {
		if m[1] != "VAR" { // the header comment's notation
			used[m[1]] = true
		}
	}
	listed := map[string]bool{}
	for k, v := range envFile(t, "../.env.example") {
		listed[k] = true
		// caddy run --envfile cuts a value at its first #; Docker and systemd keep a comment.
		if strings.Contains(v, "#") {
			t.Errorf(".env.example: %s has a comment in its value", k)
		}
	}
	for v := range used {
		if !listed[v] {
			t.Errorf(".env.example lacks %s", v)
		}
	}
	for v := range listed {
		if !used[v] {
			t.Errorf(".env.example lists %s, which Caddyfile.example does not read", v)
		}
	}
}

// envFile reads KEY=value lines (comments stand on their own lines).
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, line := range strings.Split(read(t, path), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			vars[strings.TrimSpace(k)] = v
		}
	}
	return vars
}

// TestReadmeProbesAreTheFile: the probes README.md shows are deploy/k8s-probes.yaml's, at the
// places a pod spec takes them (terminationGracePeriodSeconds on the pod, the probes on the
// container), so that the excerpt can be pasted into a Deployment as it is.
func TestReadmeProbesAreTheFile(t *testing.T) {
	m := regexp.MustCompile("(?s)\\*\\*Kubernetes\\.\\*\\*.*?\n\n```yaml\n(.*?)```").FindStringSubmatch(read(t, "../README.md"))
	if m == nil {
		t.Fatal("README.md has no Kubernetes probes excerpt")
	}
	var excerpt map[string]any
	if err := yaml.Unmarshal([]byte(m[1]), &excerpt); err != nil {
		t.Fatalf("README's probes excerpt: %v", err)
	}
	var pod any
	for _, d := range yamlDocs(t, "k8s-probes.yaml") {
		if d["kind"] == "Deployment" {
			pod = dig(d, "spec", "template", "spec")
		}
	}
	if got, want := dig(excerpt, "spec", "terminationGracePeriodSeconds"), dig(pod, "terminationGracePeriodSeconds"); got == nil || got != want {
		t.Errorf("README: spec.terminationGracePeriodSeconds %v, k8s-probes.yaml %v", got, want)
	}
	for _, key := range []string{"ports", "startupProbe", "livenessProbe", "readinessProbe"} {
		got, want := dig(excerpt, "spec", "containers", 0, key), dig(pod, "containers", 0, key)
		if got == nil || !reflect.DeepEqual(got, want) {
			t.Errorf("README: the container's %s is %v, k8s-probes.yaml's %v", key, got, want)
		}
	}
}
