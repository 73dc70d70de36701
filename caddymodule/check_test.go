package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
	"github.com/swarmsec/caddy-hardening/observatory"
)

// checkCaddyfile adapts a Caddyfile and runs the check on it, as `caddy hardening check` does.
func checkCaddyfile(t *testing.T, caddyfile string) CheckReport {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, caddyfile)
	}
	return CheckConfig(cfg)
}

// checkSite is a production configuration (admin on loopback) with one site.
func checkSite(global, site string) string {
	return "{\n\tadmin localhost:2999\n\thardening {\n\t\tenvironment production\n" + global + "\n\t}\n}\n" +
		"http://127.0.0.1:9 {\n\tbind 127.0.0.1\n" + site + "\n}\n"
}

// twoSites is a production configuration with two sites on one server (port 9).
func twoSites(a, b string) string {
	return "{\n\tadmin localhost:2999\n\thardening {\n\t\tenvironment production\n\t}\n}\n" +
		"http://a.localhost:9 {\n\tbind 127.0.0.1\n" + a + "\n}\n" +
		"http://b.localhost:9 {\n\tbind 127.0.0.1\n" + b + "\n}\n"
}

func codes(rep CheckReport) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range rep.Findings {
		m[f.Code] = f
	}
	return m
}

// TestCheckFindings: every rule the check applies has a configuration that triggers it and a
// corrected one where it is silent; each finding says where, why and how to fix it.
func TestCheckFindings(t *testing.T) {
	t.Setenv("REDIS_PASSWORD", "from-the-environment") // a placeholder that resolves to nothing is refused
	good := "\tsecurity_headers"
	cases := []struct {
		code, bad, fixed string
	}{
		{"hsts.off", checkSite("", "\tsecurity_headers {\n\t\thsts off\n\t}"), checkSite("", good)},
		{"hsts.short_max_age", checkSite("", "\tsecurity_headers {\n\t\thsts max-age=600\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\thsts max-age=31536000\n\t}")},
		{"csp.unsafe_inline", checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'self' 'unsafe-inline'\n\t\t}\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'nonce' 'strict-dynamic' 'unsafe-inline'\n\t\t}\n\t}")},
		{"csp.unsafe_eval", checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'nonce' 'strict-dynamic' 'unsafe-eval'\n\t\t}\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'nonce' 'strict-dynamic'\n\t\t}\n\t}")},
		{"csp.no_nonce", checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'self' https://cdn.example.com\n\t\t}\n\t}"), checkSite("", good)},
		{"csp.no_nonce", checkSite("", "\tsecurity_headers none {\n\t\tcsp {\n\t\t\tdefault-src https://cdn.example.com\n\t\t}\n\t}"),
			checkSite("", "\tsecurity_headers none {\n\t\tcsp {\n\t\t\tdefault-src 'none'\n\t\t}\n\t}")},
		{"csp.report_only", checkSite("", "\tsecurity_headers {\n\t\treport_only\n\t}"), checkSite("", good)},
		{"csp.absent", checkSite("", "\tsecurity_headers none"), checkSite("", good)},
		{"headers.absent", checkSite("", "\trespond ok"), checkSite("", good)},
		{"detection.shadow", checkSite("\t\tdetection {\n\t\t\tshadow\n\t\t}", good), checkSite("\t\tdetection {\n\t\t\tthreshold 20\n\t\t}", good)},
		{"redis.plaintext", checkSite("\t\tredis redis://10.255.0.1:6379", good), checkSite("\t\tredis rediss://10.255.0.1:6379", good)},
		{"redis.no_auth", checkSite("\t\tredis rediss://10.255.0.1:6379", good), checkSite("\t\tredis rediss://10.255.0.1:6379 {\n\t\t\tpassword {env.REDIS_PASSWORD}\n\t\t}", good)},
		{"redis.no_auth", checkSite("\t\tredis rediss://10.255.0.1:6379", good), checkSite("\t\tredis rediss://:{env.REDIS_PASSWORD}@10.255.0.1:6379", good)},
		{"redis.no_auth", checkSite("\t\tredis redis://10.255.0.1:6379", good), checkSite("\t\tredis redis://127.0.0.1:6379", good)},
		{"features.disabled", checkSite("\t\tfeatures {\n\t\t\tpath_guard off\n\t\t}", good), checkSite("\t\tfeatures {\n\t\t\tpath_guard on\n\t\t}", good)},
		{"redis.literal_password", checkSite("\t\tredis redis://127.0.0.1:1 {\n\t\t\tpassword hunter2\n\t\t}", good),
			checkSite("\t\tredis redis://127.0.0.1:1 {\n\t\t\tpassword {env.REDIS_PASSWORD}\n\t\t}", good)},
		{"monitoring.details_behind_proxy",
			checkSite("\t\tip_classes {\n\t\t\ttrusted 10.0.0.0/8\n\t\t}", good+"\n\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}"),
			strings.Replace(checkSite("\t\tip_classes {\n\t\t\ttrusted 10.0.0.0/8\n\t\t}", good+"\n\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}"),
				"\thardening {", "\tservers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t}\n\thardening {", 1)},
		{"monitoring.literal_secret", checkSite("", good+"\n\tmonitoring {\n\t\tcheck postgres db postgres://app:s3cret@127.0.0.1:1/app\n\t}"),
			checkSite("", good+"\n\tmonitoring {\n\t\tcheck postgres db {env.DATABASE_URL}\n\t}")},
		{"monitoring.probes_blocked",
			checkSite("", good+"\n\tpath_guard {\n\t\tsuspicious_action block\n\t}\n\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}\n\trespond ok"),
			checkSite("", good+"\n\t@guarded not path /api/monitoring/live /api/monitoring/ready /api/monitoring/simple-health /api/monitoring/health"+
				"\n\tpath_guard @guarded {\n\t\tsuspicious_action block\n\t}\n\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}\n\trespond ok")},
		{"monitoring.probes_rate_limited",
			checkSite("", good+"\n\tpolicy_rate_limit public\n\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}\n\trespond ok"),
			checkSite("", good+"\n\t@limited not path /api/monitoring/live /api/monitoring/ready /api/monitoring/simple-health /api/monitoring/health"+
				"\n\tpolicy_rate_limit @limited public\n\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}\n\trespond ok")},
		{"csp.tags_behind_proxy", checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\treverse_proxy 127.0.0.1:1"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server")},
		// The proxied pages are the inner placeholder block's (innermost wins): no warning.
		{"csp.tags_behind_proxy", checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\thandle /api/* {\n\t\treverse_proxy 127.0.0.1:1\n\t}\n\tfile_server"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\thandle /api/* {\n\t\tsecurity_headers {\n\t\t\tinject_nonce placeholder PLACEHOLDERSECRET1234\n\t\t}\n\t\treverse_proxy 127.0.0.1:1\n\t}\n\tfile_server")},
		{"csp.placeholder_in_errors",
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t}\n\treverse_proxy 127.0.0.1:1\n\thandle_errors {\n\t\treverse_proxy 127.0.0.1:1\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t}\n\treverse_proxy 127.0.0.1:1\n\thandle_errors {\n\t\tsecurity_headers {\n\t\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t\t}\n\t\treverse_proxy 127.0.0.1:1\n\t}")},
		// tags mode: an error page served in handle_errors gets the policy but not the nonce.
		{"csp.tags_in_errors",
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server\n\thandle_errors {\n\t\trewrite * /error.html\n\t\tfile_server\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server\n\thandle_errors {\n\t\tsecurity_headers {\n\t\t\tinject_nonce tags\n\t\t}\n\t\trewrite * /error.html\n\t\tfile_server\n\t}")},
		// A handle_errors that answers with text serves no page of tags.
		{"csp.tags_in_errors",
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server\n\thandle_errors 404 {\n\t\treverse_proxy 127.0.0.1:1\n\t}\n\thandle_errors {\n\t\trespond err\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server\n\thandle_errors {\n\t\trespond err\n\t}")},
		// A report path that reaches no csp_report (a typo) and no upstream loses every report.
		{"csp.report_unreceived", checkSite("", "\tsecurity_headers {\n\t\treport_uri /csp-reports\n\t}\n\tcsp_report /csp-report\n\trespond ok"),
			checkSite("", "\tsecurity_headers {\n\t\treport_uri /csp-report\n\t}\n\tcsp_report /csp-report\n\trespond ok")},
		// The application collects its reports itself: they reach it.
		{"csp.report_unreceived", checkSite("", "\tsecurity_headers {\n\t\treport_to /api/csp\n\t}\n\thandle /app/* {\n\t\treverse_proxy 127.0.0.1:1\n\t}\n\trespond ok"),
			checkSite("", "\tsecurity_headers {\n\t\treport_to /api/csp\n\t}\n\thandle_path /api/* {\n\t\treverse_proxy 127.0.0.1:1\n\t}\n\trespond ok")},
		// Sites that share a server (every HTTPS site on :443): another site's handle_errors
		// never runs for this one's requests.
		{"csp.tags_in_errors", twoSites("\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server\n\thandle_errors {\n\t\tfile_server\n\t}", "\trespond b"),
			twoSites("\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server", "\trespond b\n\thandle_errors {\n\t\tfile_server\n\t}")},
		{"csp.placeholder_in_errors", twoSites("\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t}\n\tfile_server\n\thandle_errors {\n\t\tfile_server\n\t}", "\trespond b"),
			twoSites("\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t}\n\tfile_server", "\trespond b\n\thandle_errors {\n\t\tfile_server\n\t}")},
		// Each handle_errors block needs its own: the 404 block serves a page without one.
		{"csp.placeholder_in_errors",
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t}\n\tfile_server\n"+
				"\thandle_errors 404 {\n\t\trewrite * /dup.html\n\t\tfile_server\n\t}\n"+
				"\thandle_errors {\n\t\tsecurity_headers {\n\t\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t\t}\n\t\trespond err\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t}\n\tfile_server\n"+
				"\thandle_errors 404 {\n\t\tsecurity_headers {\n\t\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t\t}\n\t\trewrite * /dup.html\n\t\tfile_server\n\t}\n"+
				"\thandle_errors {\n\t\tsecurity_headers {\n\t\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t\t}\n\t\trespond err\n\t}")},
		{"csp.wide_script_source", checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'nonce' https:\n\t\t}\n\t}"), checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'nonce' 'strict-dynamic' https:\n\t\t}\n\t}")},
		{"csp.wide_script_source", checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'self' *\n\t\t}\n\t}"), checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'self'\n\t\t}\n\t}")},
		{"csp.wide_script_source", checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'nonce' data:\n\t\t}\n\t}"), checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\tscript-src 'nonce'\n\t\t}\n\t}")},
		{"csp.wide_script_source", checkSite("", "\tsecurity_headers none {\n\t\tcsp {\n\t\t\tdefault-src 'self' http:\n\t\t}\n\t}"), checkSite("", "\tsecurity_headers none {\n\t\tcsp {\n\t\t\tdefault-src 'self'\n\t\t}\n\t}")},
		{"csp.no_object_src", checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\t-object-src\n\t\t}\n\t}"), checkSite("", good)},
		{"csp.no_base_uri", checkSite("", "\tsecurity_headers {\n\t\tcsp {\n\t\t\t-base-uri\n\t\t}\n\t}"), checkSite("", good)},
		{"csp.nonce_cached", checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08 {\n\t\t\tcache_control \"public, max-age=600\"\n\t\t}\n\t}\n\treverse_proxy 127.0.0.1:1"), checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08\n\t}\n\treverse_proxy 127.0.0.1:1")},
		{"csp.nonce_cached", checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08 {\n\t\t\tcache_control off\n\t\t}\n\t}\n\treverse_proxy 127.0.0.1:1"), checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PH-3f9c2a7b1e6d4c08 {\n\t\t\tcache_control \"private, no-store\"\n\t\t}\n\t}\n\treverse_proxy 127.0.0.1:1")},
		{"ratelimit.key_remote_host", checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\tkey {remote_host}\n\t\t}", good+"\n\tpolicy_rate_limit p"),
			checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\tkey {client_ip}\n\t\t}", good+"\n\tpolicy_rate_limit p")},
		{"ratelimit.key_spoofable", checkSite("", good+"\n\tpolicy_rate_limit api {\n\t\tkey {header.X-Forwarded-For}\n\t}"),
			checkSite("", good+"\n\tpolicy_rate_limit api {\n\t\tkey {client_ip}\n\t}")},
		{"proxies.not_strict", strings.Replace(checkSite("", good), "\thardening {", "\tservers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t}\n\thardening {", 1),
			strings.Replace(checkSite("", good), "\thardening {", "\tservers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t\ttrusted_proxies_strict\n\t}\n\thardening {", 1)},
		{"csp.browse_policy", checkSite("", "\tsecurity_headers\n\tfile_server browse"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server browse")},
		{"csp.browse_policy", checkSite("", "\tsecurity_headers\n\thandle /files/* {\n\t\tfile_server browse\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\tkeep_upstream Content-Security-Policy\n\t}\n\thandle /files/* {\n\t\tfile_server browse\n\t}")},
		{"csp.report_catch_all", checkSite("", "\tsecurity_headers {\n\t\treport_uri /csp-report\n\t}\n\tcsp_report\n\treverse_proxy 127.0.0.1:1"),
			checkSite("", "\tsecurity_headers {\n\t\treport_uri /csp-report\n\t}\n\tcsp_report /csp-report\n\treverse_proxy 127.0.0.1:1")},
		// A site of its own for the reports: nothing after it to shadow.
		{"csp.report_catch_all", checkSite("", "\tsecurity_headers\n\tcsp_report {\n\t\tmax_body_size 4096\n\t}\n\trespond ok"),
			checkSite("", "\tsecurity_headers\n\tcsp_report {\n\t\tmax_body_size 4096\n\t}")},
		{"csp.tags_with_templates", checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\ttemplates\n\tfile_server"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server")},
		// encode after security_headers (the Caddyfile's order in one site) never compresses:
		// inject_nonce removed the request's Accept-Encoding before it runs.
		{"csp.encode_inside", checkSite("", "\tencode gzip\n\tsecurity_headers {\n\t\tinject_nonce tags\n\t}\n\tfile_server"),
			checkSite("", "\troute {\n\t\tencode gzip\n\t\tsecurity_headers {\n\t\t\tinject_nonce tags\n\t\t}\n\t\tfile_server\n\t}")},
		{"csp.encode_inside", checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PLACEHOLDERSECRET1234\n\t}\n\thandle /app/* {\n\t\tencode zstd gzip\n\t\treverse_proxy 127.0.0.1:1\n\t}"),
			checkSite("", "\tsecurity_headers\n\thandle /app/* {\n\t\tencode zstd gzip\n\t\treverse_proxy 127.0.0.1:1\n\t}")},
		{"csp.placeholder_precompressed", checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PLACEHOLDERSECRET1234\n\t}\n\tfile_server {\n\t\tprecompressed gzip\n\t}"),
			checkSite("", "\tsecurity_headers {\n\t\tinject_nonce placeholder PLACEHOLDERSECRET1234\n\t}\n\tfile_server")},
		{"ratelimit.key_before_auth",
			checkSite("\t\tpolicy users {\n\t\t\tlimit 5/1m\n\t\t\tkey {http.auth.user.id}\n\t\t}", good+"\n\tbasic_auth {\n\t\talice $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG\n\t}\n\tpolicy_rate_limit users"),
			checkSite("\t\tpolicy users {\n\t\t\tlimit 5/1m\n\t\t\tkey {http.auth.user.id}\n\t\t}", good+"\n\troute {\n\t\tbasic_auth {\n\t\t\talice $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG\n\t\t}\n\t\tpolicy_rate_limit users\n\t}")},
		// forward_auth's copy_headers sets Remote-User after policy_rate_limit, which read the
		// client's own value (every signed-in user fell back to its IP's bucket).
		{"ratelimit.key_before_auth",
			checkSite("\t\tpolicy users {\n\t\t\tlimit 5/1m\n\t\t\tkey {header.Remote-User}\n\t\t}", good+"\n\tforward_auth 127.0.0.1:1 {\n\t\turi /verify\n\t\tcopy_headers Remote-User\n\t}\n\tpolicy_rate_limit users"),
			checkSite("\t\tpolicy users {\n\t\t\tlimit 5/1m\n\t\t\tkey {header.Remote-User}\n\t\t}", good+"\n\troute {\n\t\tforward_auth 127.0.0.1:1 {\n\t\t\turi /verify\n\t\t\tcopy_headers Remote-User\n\t\t}\n\t\tpolicy_rate_limit users\n\t}")},
		{"ratelimit.key_before_auth",
			checkSite("\t\tpolicy tenants {\n\t\t\tlimit 5/1m\n\t\t\tkey {header.X-Tenant}\n\t\t}", good+"\n\trequest_header X-Tenant {http.request.host}\n\tpolicy_rate_limit tenants"),
			checkSite("\t\tpolicy tenants {\n\t\t\tlimit 5/1m\n\t\t\tkey {header.X-Tenant}\n\t\t}", good+"\n\troute {\n\t\trequest_header X-Tenant {http.request.host}\n\t\tpolicy_rate_limit tenants\n\t}")},
		// A deferred Cache-Control (">", or a block that also deletes a field, which Caddy
		// defers whole) replaced the refusal's no-store: a CDN kept one client's 429 for all.
		{"ratelimit.refusal_cacheable", checkSite("", good+"\n\theader >Cache-Control \"public, max-age=600\"\n\tpolicy_rate_limit api"),
			checkSite("", good+"\n\troute {\n\t\tpolicy_rate_limit api\n\t\theader >Cache-Control \"public, max-age=600\"\n\t}")},
		{"ratelimit.refusal_cacheable", checkSite("", good+"\n\theader {\n\t\t-Server\n\t\tCDN-Cache-Control \"max-age=600\"\n\t}\n\tpolicy_rate_limit api"),
			checkSite("", good+"\n\theader -Server\n\theader CDN-Cache-Control \"max-age=600\"\n\tpolicy_rate_limit api")},
		// The same for the open breaker's 503: a CDN kept it after the upstream recovered.
		{"breaker.open_response_cacheable", checkSite("", good+"\n\theader >Cache-Control \"public, max-age=600\"\n\tupstream_breaker api\n\treverse_proxy 127.0.0.1:1"),
			checkSite("", good+"\n\troute {\n\t\tupstream_breaker api\n\t\theader >Cache-Control \"public, max-age=600\"\n\t\treverse_proxy 127.0.0.1:1\n\t}")},
		{"ratelimit.classes_inverted", checkSite("\t\tpolicy p {\n\t\t\tlimit 60/1m burst 10\n\t\t\tsuspicious 30/1m burst 30\n\t\t}", good+"\n\tpolicy_rate_limit p"),
			checkSite("\t\tpolicy p {\n\t\t\tlimit 60/1m burst 10\n\t\t\tsuspicious 30/1m burst 10\n\t\t}", good+"\n\tpolicy_rate_limit p")},
		{"ratelimit.classes_inverted", checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\ttrusted deny\n\t\t\tsuspicious unlimited\n\t\t}", good+"\n\tpolicy_rate_limit p"),
			checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\ttrusted unlimited\n\t\t\tsuspicious deny\n\t\t}", good+"\n\tpolicy_rate_limit p")},
		{"ratelimit.fail_open", checkSite("\t\tredis redis://127.0.0.1:1\n\t\trate_limit {\n\t\t\ton_store_failure allow\n\t\t}", good+"\n\tpolicy_rate_limit api"),
			checkSite("\t\tredis redis://127.0.0.1:1\n\t\trate_limit {\n\t\t\ton_store_failure fallback\n\t\t}", good+"\n\tpolicy_rate_limit api")},
		{"admin.public", strings.Replace(checkSite("", good), "admin localhost:2999", "admin 0.0.0.0:2999", 1),
			strings.Replace(checkSite("", good), "admin localhost:2999", "admin unix//run/caddy-admin.sock", 1)},
		{"config.literal_secret", checkSite("", good+"\n\treverse_proxy 127.0.0.1:1 {\n\t\theader_up Authorization \"Bearer abc123\"\n\t}"),
			checkSite("", good+"\n\treverse_proxy 127.0.0.1:1 {\n\t\theader_up Authorization \"Bearer {env.UPSTREAM_TOKEN}\"\n\t}")},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			f, ok := codes(checkCaddyfile(t, c.bad))[c.code]
			if !ok {
				t.Fatalf("%s not reported on:\n%s", c.code, c.bad)
			}
			if f.Severity != Warning || f.Message == "" || f.Fix == "" || f.Config == "" || f.Module == "" {
				t.Fatalf("incomplete finding: %+v", f)
			}
			if f, ok := codes(checkCaddyfile(t, c.fixed))[c.code]; ok {
				t.Fatalf("%s still reported after the fix: %+v\n%s", c.code, f, c.fixed)
			}
		})
	}
}

// TestCheckBreakerPlacement: a breaker that a respond or error answers before, or that has no
// handler after it, is breaker.never_runs at the breaker; a guarded reverse_proxy without
// response_header_timeout is breaker.no_response_timeout (info) at the proxy, and one that
// balances over several upstreams without lb_retries or lb_try_duration is
// breaker.multi_upstream_no_retries (warning) at the proxy. Placements that guard the upstream
// (inside its block, or in a route block before it) are silent.
func TestCheckBreakerPlacement(t *testing.T) {
	const proxy = "reverse_proxy 127.0.0.1:1 {\n\t\ttransport http {\n\t\t\tresponse_header_timeout 5s\n\t\t}\n\t}"
	for _, tc := range []struct {
		name, site string
		want       map[string]string // code -> handler at its config path; nil: none of the breaker codes
	}{
		{"after respond", "\tupstream_breaker api {\n\t\tconsecutive_failures 2\n\t}\n\thandle /api/* {\n\t\treverse_proxy 127.0.0.1:1\n\t}\n\trespond home 200",
			map[string]string{"breaker.never_runs": "upstream_breaker"}},
		{"after error", "\terror down 503\n\tupstream_breaker api\n\t" + proxy,
			map[string]string{"breaker.never_runs": "upstream_breaker"}},
		{"alone in its handle", "\thandle /api/* {\n\t\tupstream_breaker api\n\t}\n\thandle {\n\t\t" + strings.ReplaceAll(proxy, "\n", "\n\t") + "\n\t}",
			map[string]string{"breaker.never_runs": "upstream_breaker"}},
		{"proxy without response_header_timeout", "\tupstream_breaker api\n\treverse_proxy 127.0.0.1:1",
			map[string]string{"breaker.no_response_timeout": "reverse_proxy"}},
		{"inside the proxy's handle", "\thandle /api/* {\n\t\tupstream_breaker api\n\t\t" + strings.ReplaceAll(proxy, "\n", "\n\t") + "\n\t}\n\trespond home 200", nil},
		{"in a route block before the proxy", "\troute {\n\t\tupstream_breaker api\n\t}\n\t" + proxy, nil},
		// Beside the proxying handle, the breaker runs after it and guards only file_server.
		{"beside the proxy's handle", "\tupstream_breaker api\n\thandle /api/* {\n\t\t" + strings.ReplaceAll(proxy, "\n", "\n\t") + "\n\t}\n\tfile_server",
			map[string]string{"breaker.behind_proxy": "upstream_breaker"}},
		{"guarding a file_server alone", "\tupstream_breaker files\n\tfile_server", nil},
		{"proxy keeping failed hosts out longer than open_for", "\tupstream_breaker api {\n\t\topen_for 5s\n\t}\n\t" + strings.Replace(proxy, "\n\t}", "\n\t\tfail_duration 10s\n\t}", 1),
			map[string]string{"breaker.open_for_below_fail_duration": "reverse_proxy"}},
		{"proxy keeping failed hosts out no longer than open_for", "\tupstream_breaker api {\n\t\topen_for 10s\n\t}\n\t" + strings.Replace(proxy, "\n\t}", "\n\t\tfail_duration 10s\n\t}", 1), nil},
		{"proxy keeping failed hosts out longer than the default open_for", "\tupstream_breaker api\n\t" + strings.Replace(proxy, "\n\t}", "\n\t\tfail_duration 1m\n\t}", 1),
			map[string]string{"breaker.open_for_below_fail_duration": "reverse_proxy"}},
		// Several upstreams and no retry: one dead upstream of two fails half the requests, and the
		// breaker opens for the healthy one too. A retry (lb_retries, lb_try_duration) masks it.
		{"proxy to two upstreams without retries", "\tupstream_breaker api\n\t" + strings.Replace(proxy, "127.0.0.1:1", "127.0.0.1:1 127.0.0.1:2", 1),
			map[string]string{"breaker.multi_upstream_no_retries": "reverse_proxy"}},
		{"proxy to a port range without retries", "\tupstream_breaker api\n\t" + strings.Replace(proxy, "127.0.0.1:1", "127.0.0.1:1-2", 1),
			map[string]string{"breaker.multi_upstream_no_retries": "reverse_proxy"}},
		{"proxy to two upstreams with passive health checks only", "\tupstream_breaker api\n\t" + strings.Replace(strings.Replace(proxy, "127.0.0.1:1", "127.0.0.1:1 127.0.0.1:2", 1), "\n\t}", "\n\t\tfail_duration 10s\n\t}", 1),
			map[string]string{"breaker.multi_upstream_no_retries": "reverse_proxy"}},
		{"proxy to dynamic upstreams without retries", "\tupstream_breaker api\n\t" + strings.Replace(proxy, "127.0.0.1:1 {", "{\n\t\tdynamic a localhost 8080", 1),
			map[string]string{"breaker.multi_upstream_no_retries": "reverse_proxy"}},
		{"proxy to two upstreams in a handle, without retries", "\thandle /api/* {\n\t\tupstream_breaker api\n\t\t" + strings.ReplaceAll(strings.Replace(proxy, "127.0.0.1:1", "127.0.0.1:1 127.0.0.1:2", 1), "\n", "\n\t") + "\n\t}",
			map[string]string{"breaker.multi_upstream_no_retries": "reverse_proxy"}},
		{"proxy to two upstreams with lb_retries", "\tupstream_breaker api\n\t" + strings.Replace(strings.Replace(proxy, "127.0.0.1:1", "127.0.0.1:1 127.0.0.1:2", 1), "\n\t}", "\n\t\tlb_retries 1\n\t}", 1), nil},
		{"proxy to two upstreams with lb_try_duration", "\tupstream_breaker api\n\t" + strings.Replace(strings.Replace(proxy, "127.0.0.1:1", "127.0.0.1:1 127.0.0.1:2", 1), "\n\t}", "\n\t\tlb_try_duration 2s\n\t}", 1), nil},
		{"two upstreams without retries, no breaker", "\t" + strings.Replace(proxy, "127.0.0.1:1", "127.0.0.1:1 127.0.0.1:2", 1), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := checkSite("", "\tsecurity_headers\n"+tc.site)
			got := codes(checkCaddyfile(t, cf))
			for _, code := range []string{"breaker.never_runs", "breaker.no_response_timeout", "breaker.behind_proxy", "breaker.open_for_below_fail_duration", "breaker.multi_upstream_no_retries"} {
				f, ok := got[code]
				handler, want := tc.want[code]
				if ok != want {
					t.Fatalf("%s reported: %v, want %v: %+v\n%s", code, ok, want, f, cf)
				}
				if !ok {
					continue
				}
				at, _ := adaptedAt(t, cf, f.Config).(map[string]any)
				if at["handler"] != handler || f.Message == "" || f.Fix == "" || (code == "breaker.no_response_timeout" || code == "breaker.open_for_below_fail_duration") == (f.Severity == Warning) {
					t.Fatalf("%+v: want a finding at the %s handler", f, handler)
				}
			}
		})
	}
	// A named route of several directives keeps only the first in Caddy's adapter (v2.11.9):
	// the reverse_proxy after the breaker is dropped, and every request got an empty 200.
	named := func(body, site string) string {
		return strings.Replace(checkSite("", "\tsecurity_headers\n"+site), "http://", "&(backend) {\n"+body+"\n}\n\nhttp://", 1)
	}
	for _, tc := range []struct {
		name, cf string
		want     bool
	}{
		{"breaker and proxy in a named route", named("\tupstream_breaker api\n\t"+proxy, "\tinvoke backend"), true},
		{"in a route block of a named route", named("\troute {\n\t\tupstream_breaker api\n\t\t"+strings.ReplaceAll(proxy, "\n", "\n\t")+"\n\t}", "\tinvoke backend"), false},
		{"named route of a breaker alone, the proxy after the invoke", named("\tupstream_breaker api", "\troute {\n\t\tinvoke backend\n\t\t"+strings.ReplaceAll(proxy, "\n", "\n\t")+"\n\t}"), false},
		{"named route of a breaker alone, invoked from another named route", strings.Replace(named("\tupstream_breaker api", "\tinvoke outer"), "http://", "&(outer) {\n\troute {\n\t\tinvoke backend\n\t\t"+strings.ReplaceAll(proxy, "\n", "\n\t")+"\n\t}\n}\n\nhttp://", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := codes(checkCaddyfile(t, tc.cf))["breaker.never_runs"]
			if ok != tc.want {
				t.Fatalf("breaker.never_runs reported: %v, want %v: %+v\n%s", ok, tc.want, f, tc.cf)
			}
			if !ok {
				return
			}
			if at, _ := adaptedAt(t, tc.cf, f.Config).(map[string]any); at["handler"] != "upstream_breaker" || !strings.Contains(f.Message, "&(backend)") || !strings.Contains(f.Fix, "route {") {
				t.Fatalf("%+v: want a finding at the breaker in the named route, naming it, with the route block fix", f)
			}
		})
	}
	// breaker.shared_without_redis gives the breaker's place in the JSON config too.
	cf := checkSite("", "\tsecurity_headers\n\tupstream_breaker api {\n\t\tshared\n\t}\n\t"+proxy)
	f := codes(checkCaddyfile(t, cf))["breaker.shared_without_redis"]
	if at, _ := adaptedAt(t, cf, f.Config).(map[string]any); at["handler"] != "upstream_breaker" {
		t.Fatalf("breaker.shared_without_redis at %q, not the breaker's config path", f.Config)
	}
}

// TestCheckFindingWording: each finding's text fits its case and gives its full place in the
// JSON config.
func TestCheckFindingWording(t *testing.T) {
	t.Run("monitoring.literal_secret", func(t *testing.T) {
		cf := checkSite("", "\tsecurity_headers\n\thandle_path /api/monitoring/* {\n\t\tmonitoring {\n"+
			"\t\t\tcheck http billing https://billing.internal/healthz {\n\t\t\t\theader Authorization \"Bearer abc\"\n\t\t\t}\n"+
			"\t\t\tcheck postgres db postgres://app:s3cret@127.0.0.1:1/app\n\t\t}\n\t}")
		rep := checkCaddyfile(t, cf)
		var got []Finding
		for _, f := range rep.Findings {
			if f.Code == "monitoring.literal_secret" {
				got = append(got, f)
			}
		}
		if len(got) != 2 {
			t.Fatalf("findings: %+v", rep.Findings)
		}
		for _, f := range got {
			if !strings.HasPrefix(f.Config, "apps.http.servers.srv0.routes.") {
				t.Errorf("config path %q is not a full apps.… path", f.Config)
			}
			switch {
			case strings.HasSuffix(f.Config, ".checks.0.headers.Authorization"):
				if !strings.Contains(f.Fix, "{env.<NAME>}") || strings.Contains(f.Fix, "DATABASE_URL") {
					t.Errorf("Authorization fix: %s", f.Fix)
				}
			case strings.HasSuffix(f.Config, ".checks.1.dsn"):
				if !strings.Contains(f.Fix, "{env.DATABASE_URL}") {
					t.Errorf("DSN fix: %s", f.Fix)
				}
			default:
				t.Errorf("unexpected finding %+v", f)
			}
		}
		// The path leads to the value in the adapted JSON.
		for _, f := range got {
			v := adaptedAt(t, cf, f.Config)
			if v != "Bearer abc" && v != "postgres://app:s3cret@127.0.0.1:1/app" {
				t.Errorf("%s does not lead to the secret in the JSON config: %v", f.Config, v)
			}
		}
	})
	t.Run("monitoring.literal_secret in an http check", func(t *testing.T) {
		// A password or a token in the URL, and a credential header other than Authorization.
		cf := checkSite("", "\tsecurity_headers\n\thandle_path /api/monitoring/* {\n\t\tmonitoring {\n"+
			"\t\t\tcheck http a \"http://alice:urlsecret77@127.0.0.1:1/x\"\n"+
			"\t\t\tcheck http b \"http://127.0.0.1:1/x?token=qsecret55&page=2\" {\n\t\t\t\theader X-Api-Key \"apikeysecret44\"\n\t\t\t\theader Accept text/plain\n\t\t\t}\n"+
			"\t\t\tcheck http c \"http://127.0.0.1:1/x?page=2\" {\n\t\t\t\theader X-Api-Key {env.API_KEY}\n\t\t\t}\n\t\t}\n\t}")
		var got []string
		for _, f := range checkCaddyfile(t, cf).Findings {
			if f.Code == "monitoring.literal_secret" {
				got = append(got, f.Config[strings.Index(f.Config, "checks."):])
			}
		}
		if want := []string{"checks.0.url", "checks.1.url", "checks.1.headers.X-Api-Key"}; !slices.Equal(got, want) {
			t.Fatalf("literal secrets at %q, want %q", got, want)
		}
	})
	t.Run("monitoring.details_behind_proxy", func(t *testing.T) {
		site := "\tsecurity_headers\n\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}"
		for trusted, want := range map[string]string{
			"10.0.0.0/8": "holds the private network 10.0.0.0/8,",
			"0.0.0.0/0":  "holds 0.0.0.0/0, which covers private networks",
		} {
			f, ok := codes(checkCaddyfile(t, checkSite("\t\tip_classes {\n\t\t\ttrusted "+trusted+"\n\t\t}", site)))["monitoring.details_behind_proxy"]
			if !ok || !strings.Contains(f.Message, want) {
				t.Errorf("trusted %s: %q, want it to say %q", trusted, f.Message, want)
			}
		}
	})
	t.Run("redis.tls_insecure", func(t *testing.T) {
		// The error refuses the configuration, yet the check goes on: the findings of the
		// modules after it (here the handler's short HSTS) are listed too.
		rep := checkCaddyfile(t, checkSite("\t\tredis rediss://127.0.0.1:1 {\n\t\t\ttls {\n\t\t\t\tinsecure_skip_verify\n\t\t\t}\n\t\t}", "\tsecurity_headers {\n\t\thsts max-age=600\n\t}"))
		got := codes(rep)
		if f, ok := got["redis.tls_insecure"]; !ok || f.Severity != Error || rep.Errors != 1 || !rep.Failed(false) {
			t.Fatalf("want one error, redis.tls_insecure: %+v", rep)
		}
		if _, ok := got["hsts.short_max_age"]; !ok {
			t.Fatalf("the findings after the error are missing: %+v", rep)
		}
		if _, ok := got["config.invalid"]; ok {
			t.Fatalf("the error is counted twice: %+v", rep)
		}
	})
}

// TestCheckProbesBlocked: monitoring.probes_blocked follows the routes as Caddy runs them for
// each probe path: it names the probes a blocking path_guard would see and the path_guard's
// place in the JSON config, and stays silent where the probes never reach one.
func TestCheckProbesBlocked(t *testing.T) {
	const mon = "\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}\n\trespond ok"
	block := func(matcher string) string {
		return "\tpath_guard " + matcher + " {\n\t\tsuspicious_action block\n\t}\n"
	}
	for _, c := range []struct {
		name, site string
		blocked    []string // the probes the message must name; none: not reported
		open       []string // the probes it must not name
	}{
		{"site level", block("") + mon, []string{"/api/monitoring/live", "/api/monitoring/ready", "/api/monitoring/health"}, nil},
		{"matcher leaves only live out", "\t@guarded not path /api/monitoring/live\n" + block("@guarded") + mon,
			[]string{"/api/monitoring/ready"}, []string{"/api/monitoring/live"}},
		{"matcher leaves the mount out", "\t@guarded not path /api/monitoring/*\n" + block("@guarded") + mon, nil, nil},
		{"inside handle_path, before monitoring", "\thandle_path /api/monitoring/* {\n" + block("") + "\t\tmonitoring\n\t}\n\trespond ok",
			[]string{"/api/monitoring/live"}, nil},
		{"inside handle_path, matcher on the stripped path", "\thandle_path /api/monitoring/* {\n\t\t@guarded not path /live /ready /simple-health /health\n" +
			block("@guarded") + "\t\tmonitoring\n\t}\n\trespond ok", nil, nil},
		{"in another handle", "\thandle /api/* {\n" + block("") + "\t\trespond api\n\t}\n" + mon, nil, nil},
		{"no block", "\tpath_guard\n" + mon, nil, nil},
		{"in a route, which Caddy orders after handle_path", "\troute {\n" + block("") + "\t}\n" + mon, nil, nil},
		{"in a route wrapping the mount", "\troute {\n" + block("") + mon + "\n\t}", []string{"/api/monitoring/live"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cf := checkSite("", "\tsecurity_headers\n"+c.site)
			f, ok := codes(checkCaddyfile(t, cf))["monitoring.probes_blocked"]
			if ok != (len(c.blocked) > 0) {
				t.Fatalf("reported: %v, want %v: %+v\n%s", ok, len(c.blocked) > 0, f, cf)
			}
			if !ok {
				return
			}
			for _, p := range c.blocked {
				if !strings.Contains(f.Message, p+",") && !strings.Contains(f.Message, p+" ") {
					t.Errorf("message does not name %s: %s", p, f.Message)
				}
			}
			for _, p := range c.open {
				if strings.Contains(f.Message, p+",") || strings.Contains(f.Message, p+" ") {
					t.Errorf("message names %s, which is left out: %s", p, f.Message)
				}
			}
			if f.Severity != Warning || !strings.Contains(f.Fix, "not path /api/monitoring/live /api/monitoring/ready") {
				t.Errorf("finding: %+v", f)
			}
			v := adaptedAt(t, cf, f.Config)
			if h, _ := v.(map[string]any); h["handler"] != "path_guard" || h["suspicious_action"] != "block" {
				t.Errorf("%s is not the blocking path_guard: %v", f.Config, v)
			}
		})
	}
}

// TestCheckRateLimitNotes: the informational rate-limit findings (a global key, a shadow
// policy, client-IP keys without trusted_proxies) come and go with their cause.
// TestCheckRateLimitKeyPlaceholders: a key of constant placeholders is a global limit, and an
// {http.*} placeholder Caddy does not know is reported (a typo is empty for every request).
func TestCheckRateLimitKeyPlaceholders(t *testing.T) {
	for _, tc := range []struct{ key, code string }{
		{"{env.HOME}", "ratelimit.global_key"},
		{"{system.hostname}", "ratelimit.global_key"},
		{"{http.reqest.header.X-API-Key}", "ratelimit.key_unknown_placeholder"},
	} {
		found := codes(checkCaddyfile(t, checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\tkey "+tc.key+"\n\t\t}", "\tpolicy_rate_limit p")))
		if f, ok := found[tc.code]; !ok || f.Fix == "" {
			t.Errorf("key %s: %s not reported (%v)", tc.key, tc.code, found)
		}
	}
	found := codes(checkCaddyfile(t, checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\tkey {header.X-API-Key}:{http.auth.user.id}:{http.vars.tenant}\n\t\t}", "\tpolicy_rate_limit p")))
	for _, code := range []string{"ratelimit.global_key", "ratelimit.key_unknown_placeholder"} {
		if _, ok := found[code]; ok {
			t.Errorf("%s reported for a key of known request placeholders", code)
		}
	}
}

// TestCheckRateLimitClientChosenKey: a key made only of what the client writes (a header, a
// cookie, the URI) is reported unless a client-IP policy runs before it on the route; a key
// with the client IP or what authentication sets is not.
func TestCheckRateLimitClientChosenKey(t *testing.T) {
	const code = "ratelimit.key_client_chosen"
	policy := func(key string) string { return "\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\tkey " + key + "\n\t\t}" }
	for _, key := range []string{"{header.X-API-Key}", "{http.request.cookie.session}", "{query.token}", "{header.X-Tenant}:{header.X-User}"} {
		f, ok := codes(checkCaddyfile(t, checkSite(policy(key), "\tpolicy_rate_limit p")))[code]
		if !ok || f.Severity != Info || f.Fix == "" || f.Config == "" || f.Module != "policy_rate_limit" {
			t.Errorf("key %s: %s %+v (reported: %v)", key, code, f, ok)
		}
	}
	// forward_auth sets Remote-User, but X-Tenant is still the client's choice.
	if _, ok := codes(checkCaddyfile(t, checkSite(policy("{header.Remote-User}:{header.X-Tenant}"),
		"\troute {\n\t\tforward_auth 127.0.0.1:1 {\n\t\t\turi /verify\n\t\t\tcopy_headers Remote-User\n\t\t}\n\t\tpolicy_rate_limit p\n\t}")))[code]; !ok {
		t.Errorf("a key with a client header beside forward_auth's Remote-User: %s not reported", code)
	}
	for _, tc := range []struct{ key, site string }{
		{"{header.X-API-Key}", "\tpolicy_rate_limit api\n\tpolicy_rate_limit p"}, // a client-IP policy first
		{"{client_ip}:{header.X-User}", "\tpolicy_rate_limit p"},
		{"{header.X-API-Key}:{http.auth.user.id}", "\troute {\n\t\tbasic_auth {\n\t\t\talice $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG\n\t\t}\n\t\tpolicy_rate_limit p\n\t}"},
		{"{header.X-Forwarded-For}", "\tpolicy_rate_limit p"}, // ratelimit.key_spoofable's
		// Set by forward_auth before it: the authentication's value, not the client's.
		{"{header.Remote-User}", "\troute {\n\t\tforward_auth 127.0.0.1:1 {\n\t\t\turi /verify\n\t\t\tcopy_headers Remote-User\n\t\t}\n\t\tpolicy_rate_limit p\n\t}"},
	} {
		if f, ok := codes(checkCaddyfile(t, checkSite(policy(tc.key), tc.site)))[code]; ok {
			t.Errorf("key %s on %q: %s reported: %+v", tc.key, tc.site, code, f)
		}
	}
}

func TestCheckRateLimitNotes(t *testing.T) {
	bad := codes(checkCaddyfile(t, checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\tkey everyone\n\t\t\tshadow\n\t\t}",
		"\tsecurity_headers\n\tpolicy_rate_limit p\n\tpolicy_rate_limit api")))
	for _, code := range []string{"ratelimit.global_key", "ratelimit.shadow", "ratelimit.no_trusted_proxies"} {
		if f, ok := bad[code]; !ok || f.Severity != Info || f.Fix == "" {
			t.Errorf("%s: %+v (reported: %v)", code, f, ok)
		}
	}
	fixed := codes(checkCaddyfile(t, strings.Replace(checkSite("", "\tsecurity_headers\n\tpolicy_rate_limit api"),
		"\thardening {", "\tservers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t}\n\thardening {", 1)))
	for code := range fixed {
		if strings.HasPrefix(code, "ratelimit.") {
			t.Errorf("%s reported on a clean rate-limit configuration", code)
		}
	}
}

// TestCheckHeaderKeyWithoutTrustedProxies: a key of client placeholders falls back to the
// client IP for requests without them, so without trusted_proxies behind a load balancer all
// those requests shared the proxy's bucket, and the note was given for {client_ip} keys only.
// A key naming no client (one bucket for all, or per host) falls back to nothing.
func TestCheckHeaderKeyWithoutTrustedProxies(t *testing.T) {
	const code = "ratelimit.no_trusted_proxies"
	policy := func(key string) string { return "\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\tkey " + key + "\n\t\t}" }
	for key, want := range map[string]bool{"{header.X-API-Key}": true, "{host}:{header.X-API-Key}": true, "{host}": false, "everyone": false} {
		f, ok := codes(checkCaddyfile(t, checkSite(policy(key), "\tpolicy_rate_limit p")))[code]
		if ok != want || (ok && !strings.Contains(f.Message, "falls back to the client IP")) {
			t.Errorf("key %s: %s reported %v (want %v): %+v", key, code, ok, want, f)
		}
	}
}

// TestCheckGoodConfigIsClean: the recommended production shape has no warning.
func TestCheckGoodConfigIsClean(t *testing.T) {
	rep := checkCaddyfile(t, checkSite("\t\tip_classes {\n\t\t\ttrusted 127.0.0.1\n\t\t}",
		"\tpath_guard\n\tsecurity_headers\n\tcsp_report /csp-report\n\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}"))
	if rep.Errors+rep.Warnings != 0 || rep.Failed(true) {
		t.Fatalf("findings on a good configuration: %+v", rep.Findings)
	}
}

// TestCheckEnvironments: production-only rules stay silent in development.
func TestCheckEnvironments(t *testing.T) {
	cfg := strings.Replace(checkSite("\t\tdetection {\n\t\t\tshadow\n\t\t}", "\tsecurity_headers {\n\t\treport_only\n\t\thsts max-age=600\n\t}"),
		"environment production", "environment development", 1)
	rep := checkCaddyfile(t, cfg)
	if rep.Environment != Development {
		t.Fatalf("environment %s", rep.Environment)
	}
	for _, code := range []string{"detection.shadow", "csp.report_only", "hsts.short_max_age", "headers.absent"} {
		if _, ok := codes(rep)[code]; ok {
			t.Errorf("%s reported in development", code)
		}
	}
}

// TestCheckRefusedConfig: a configuration Caddy refuses (HSTS preload without
// includeSubDomains, written in JSON past the Caddyfile's own check) is an error: exit 1.
func TestCheckRefusedConfig(t *testing.T) {
	cfg := `{"admin":{"listen":"localhost:2999"},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:9"],"routes":[{"handle":[
		{"handler":"security_headers","hsts":{"max_age":63072000,"include_subdomains":false,"preload":true}}]}]}}}}}`
	rep := CheckConfig([]byte(cfg))
	f, ok := codes(rep)["config.invalid"]
	if !ok || f.Severity != Error || !strings.Contains(f.Message, "includeSubDomains") || !rep.Failed(false) {
		t.Fatalf("want a config.invalid error naming includeSubDomains, got %+v", rep)
	}
	if rep := CheckConfig([]byte(`{"apps":`)); rep.Errors != 1 {
		t.Fatalf("undecodable JSON: %+v", rep)
	}
	// The check provisions against a throwaway storage, but a storage module Caddy refuses is
	// still refused, where it is configured.
	for at, cfg := range map[string]string{
		"storage": `{"storage": {"module": "nosuch"}}`,
		"apps.pki.certificate_authorities.local.storage": `{"apps": {"pki": {"certificate_authorities": {"local": {"storage": {"module": "file_system", "root": "x", "bogus": 1}}}}}}`,
	} {
		rep := CheckConfig([]byte(cfg))
		f, ok := codes(rep)["config.invalid"]
		if !ok || f.Config != at || !strings.Contains(f.Message, "loading storage module") || rep.Errors != 1 {
			t.Errorf("%s: want one config.invalid at %s, got %+v", cfg, at, rep)
		}
	}
}

// TestCheckCommand runs the cobra command: text and JSON output, exit status with --strict.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := dir + "/" + name
		if err := writeFile(p, body); err != nil {
			t.Fatal(err)
		}
		return p
	}
	warn := write("warn.caddyfile", checkSite("", "\tsecurity_headers {\n\t\thsts max-age=600\n\t}"))
	run := func(args ...string) (string, error) {
		cmd := checkCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("--config", warn)
	// The finding names the handler's place in the JSON config, then the option.
	if err != nil || !regexp.MustCompile(`WARNING hsts.short_max_age \(security_headers, at apps\.http\.servers\.srv0\.routes\.\d+\.handle\.\d+(\.routes\.\d+\.handle\.\d+)*\.hsts\.max_age\)`).MatchString(out) ||
		!strings.Contains(out, "fix: use hsts max-age=63072000") {
		t.Fatalf("without --strict: err %v\n%s", err, out)
	}
	if _, err := run("--config", warn, "--strict"); err == nil {
		t.Fatal("--strict with a warning exits 0")
	}
	out, err = run("--config", warn, "--json")
	var rep CheckReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Warnings != 1 {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if _, err := run("--config", dir+"/missing"); err == nil {
		t.Fatal("a missing file exits 0")
	}
	// A flag of the other mode is refused before anything runs (no lint, no fetch).
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", warn, "--url", "http://127.0.0.1:1/"}, "--config cannot be used with --url"},
		{[]string{"--adapter", "caddyfile", "--url", "http://127.0.0.1:1/"}, "--adapter cannot be used with --url"},
		{[]string{"--strict", "--url", "http://127.0.0.1:1/", "--json"}, "--strict cannot be used with --url"},
		{[]string{"--config", warn, "--min-grade", "A"}, "--min-grade needs --url"},
		{[]string{"--config", warn, "--ca-file", "root.crt"}, "--ca-file needs --url"},
		{[]string{"--http-url", "http://127.0.0.1:1/"}, "--http-url needs --url"},
		{[]string{"--url", "http://127.0.0.1:1/", "--http-url", "http://127.0.0.1:2/"}, "--http-url goes with an https:// --url"},
	} {
		out, err := run(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(out, "hsts.short_max_age") {
			t.Errorf("%q: err %v, want %q and no report\n%s", tc.args, err, tc.want, out)
		}
	}
}

func writeFile(p, body string) error { return os.WriteFile(p, []byte(body), 0o600) }

// TestCheckCommandAdaptError: a Caddyfile its adapter refuses is one config.invalid error with
// the file and line, in the JSON on stdout and in the text, and exits 1; a missing file is
// still a plain error.
func TestCheckCommandAdaptError(t *testing.T) {
	p := t.TempDir() + "/Caddyfile"
	if err := writeFile(p, checkSite("", "	monitoring {\n\t\tdashboard on\n\t\tdashboard off\n\t}")); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, error) {
		cmd := checkCommand()
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), errOut.String(), err
	}
	out, stderr, err := run("--config", p, "--json")
	var rep CheckReport
	if err == nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("--json: err %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
	}
	if rep.Errors != 1 || len(rep.Findings) != 1 || rep.Findings[0].Code != "config.invalid" ||
		!strings.Contains(rep.Findings[0].Message, "dashboard is given twice, at "+p+":") || rep.Findings[0].Fix == "" {
		t.Fatalf("--json report: %+v", rep)
	}
	out, _, err = run("--config", p)
	if err == nil || !strings.Contains(out, "ERROR   config.invalid (caddy)") || !strings.Contains(out, "1 error(s)") {
		t.Fatalf("text: err %v\n%s", err, out)
	}
	if _, _, err := run("--config", p+".missing", "--json"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a missing file: err %v", err)
	}
	// A Caddyfile whose name does not say so is read as JSON: the fix names --adapter.
	conf := t.TempDir() + "/site.conf"
	if err := writeFile(conf, checkSite("", "	path_guard")); err != nil {
		t.Fatal(err)
	}
	out, _, err = run("--config", conf)
	if err == nil || !strings.Contains(out, "fix: for a Caddyfile whose name is not Caddyfile or *.caddyfile, give --adapter caddyfile") {
		t.Fatalf("a Caddyfile named site.conf: err %v\n%s", err, out)
	}
	if out, _, err := run("--config", conf, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("with --adapter caddyfile: err %v\n%s", err, out)
	}
}

// localCertsCaddy starts a Caddy serving the site body on localhost:httpsPort with its local
// CA's certificate (and the HTTP redirect on httpPort: no https_port, so the redirect keeps
// the site's port), waits for TLS, and returns the CA's root certificate file.
func localCertsCaddy(t *testing.T, httpPort, httpsPort int, site string) string {
	t.Helper()
	storage := t.TempDir()
	testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thttp_port %d\n\tlocal_certs\n\tskip_install_trust\n\tstorage file_system %s\n}\nlocalhost:%d {\n\tbind 127.0.0.1\n%s}\n",
		httpPort, storage, httpsPort, site))
	waitTLS(t, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	return storage + "/pki/authorities/local/root.crt"
}

// TestCheckGradesLiveCaddy grades a real Caddy over HTTP and TLS (its local CA trusted with
// --ca-file): with security_headers' production defaults, and without any.
func TestCheckGradesLiveCaddy(t *testing.T) {
	httpsPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	ca := localCertsCaddy(t, httpPort, httpsPort, `	handle /bare {
		respond "bare"
	}
	handle {
		security_headers
		header Content-Type "text/html; charset=utf-8"
		respond "<!doctype html><p>hardened</p>"
	}
`)
	grade := func(path string) observatory.Report {
		var out bytes.Buffer
		if err := runGrade(context.Background(), &out, fmt.Sprintf("http://localhost:%d%s", httpPort, path), "", ca, "", true); err != nil {
			t.Fatal(err)
		}
		var rep observatory.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := grade("/")
	want := map[string]string{
		observatory.TestRedirection:  "redirection-to-https",
		observatory.TestHSTS:         "hsts-implemented-max-age-at-least-six-months",
		observatory.TestContentType:  "x-content-type-options-nosniff",
		observatory.TestFrameOptions: "x-frame-options-implemented-via-csp",
		observatory.TestReferrer:     "referrer-policy-private",
		observatory.TestCORP:         "cross-origin-resource-policy-implemented-with-same-origin",
	}
	for _, r := range rep.Results {
		if w, ok := want[r.Test]; ok && r.Result != w {
			t.Errorf("%s = %s, want %s", r.Test, r.Result, w)
		}
		if !r.Pass {
			t.Errorf("security_headers defaults fail %s: %s", r.Test, r.Result)
		}
	}
	// 100 + CSP without unsafe sources 5 + CORP same-origin 10 + Referrer-Policy 5 + frame-ancestors 5.
	if rep.Score != 125 || rep.Grade != "A+" {
		t.Fatalf("security_headers defaults: score %d grade %s, want 125 A+", rep.Score, rep.Grade)
	}
	// Without headers: CSP -25, HSTS -20, X-Content-Type-Options -5, X-Frame-Options -20.
	if bare := grade("/bare"); bare.Score != 30 || bare.Grade != "D" {
		t.Fatalf("bare Caddy: score %d grade %s, want 30 D: %+v", bare.Score, bare.Grade, bare.Results)
	}
	var out bytes.Buffer
	if err := runGrade(context.Background(), &out, fmt.Sprintf("http://localhost:%d/bare", httpPort), "", ca, "B", false); err == nil ||
		!strings.Contains(out.String(), "FAIL  -25  content-security-policy") || !strings.Contains(out.String(), "fix: send a Content-Security-Policy") {
		t.Fatalf("--min-grade B on a D: err %v\n%s", err, out.String())
	}
}

// TestCheckGradeUntrustedCertificate: without the CA of Caddy's local certificates, grading
// the https:// URL stops with an error that says its certificate is not trusted and how to pass
// --ca-file, whether or not something answers on the http:// side (it used to report the
// port-80 error, or grade the plain-HTTP redirect in place of the URL asked for); an https://
// URL that does not answer is named in the error. An http:// URL whose redirect meets the
// untrusted certificate is graded (the URL asked for), with a note saying so.
func TestCheckGradeUntrustedCertificate(t *testing.T) {
	httpsPort, httpPort, closed := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	ca := localCertsCaddy(t, httpPort, httpsPort, `	security_headers
	respond "hardened"
`)
	site := fmt.Sprintf("https://localhost:%d/", httpsPort)
	plain := fmt.Sprintf("http://localhost:%d/", httpPort)
	nothing := fmt.Sprintf("http://localhost:%d/", closed)
	grade := func(target, httpURL, caFile string) (string, error) {
		var out bytes.Buffer
		err := runGrade(context.Background(), &out, target, httpURL, caFile, "", false)
		return out.String(), err
	}

	for _, httpURL := range []string{nothing, plain} {
		out, err := grade(site, httpURL, "")
		if err == nil {
			t.Fatalf("--url %s --http-url %s without the CA: exit 0\n%s", site, httpURL, out)
		}
		msg := err.Error()
		for _, want := range []string{site, "certificate is not trusted", "--ca-file", "pki/authorities/local/root.crt"} {
			if !strings.Contains(msg, want) {
				t.Errorf("--http-url %s: the error lacks %q: %s", httpURL, want, msg)
			}
		}
		if strings.Contains(msg, fmt.Sprint(closed)) || out != "" {
			t.Errorf("--http-url %s: the error names the http:// side, or a grade was printed: %s\n%s", httpURL, msg, out)
		}
	}
	if out, err := grade(site, nothing, ca); err != nil || !strings.Contains(out, site+": score") || !strings.Contains(out, "redirection-not-needed-no-http") {
		t.Errorf("with --ca-file: %v\n%s", err, out)
	}
	down := fmt.Sprintf("https://localhost:%d/", closed)
	if _, err := grade(down, plain, ca); err == nil || !strings.Contains(err.Error(), down) {
		t.Errorf("an https:// URL that does not answer: %v, want an error naming it", err)
	}

	out, err := grade(plain, "", "")
	if err != nil || !strings.Contains(out, plain+": score") || !strings.Contains(out, "redirection-invalid-cert") ||
		!strings.Contains(out, "note: "+site) || !strings.Contains(out, "--ca-file") {
		t.Errorf("--url %s without the CA: %v\n%s", plain, err, out)
	}
}

// TestCheckGradeRedirectToNowhere: an http:// URL whose redirect leads to an https:// URL that
// refuses connections fails the redirection test, and the note (text and --json) names the
// target and the failure; the redirect used to pass silently.
func TestCheckGradeRedirectToNowhere(t *testing.T) {
	port, closed := testenv.FreePort(t), testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf("http://localhost:%d {\n\tbind 127.0.0.1\n\tredir https://localhost:%d{uri} 308\n}\n", port, closed))
	target := fmt.Sprintf("http://localhost:%d/", port)
	nowhere := fmt.Sprintf("https://localhost:%d/", closed)
	var out bytes.Buffer
	if err := runGrade(context.Background(), &out, target, "", "", "", false); err != nil ||
		!strings.Contains(out.String(), "FAIL  -20  redirection                      redirection-target-unreachable") ||
		!strings.Contains(out.String(), "note: "+nowhere+" (the redirect's target) cannot be fetched: ") ||
		!strings.Contains(out.String(), "connection refused") {
		t.Fatalf("text: %v\n%s", err, out.String())
	}
	out.Reset()
	var rep observatory.Report
	if err := runGrade(context.Background(), &out, target, "", "", "", true); err != nil || json.Unmarshal(out.Bytes(), &rep) != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(rep.Note, nowhere) {
		t.Fatalf("--json note %q, want one naming %s", rep.Note, nowhere)
	}
}

// adaptedAt is the value at a finding's config path (dot-separated keys and indexes) in the
// Caddyfile's adapted JSON, or nil when the path leads nowhere.
func adaptedAt(t *testing.T, caddyfile, path string) any {
	t.Helper()
	var v any
	adapted, _, _ := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err := json.Unmarshal(adapted, &v); err != nil {
		t.Fatal(err)
	}
	for _, k := range strings.Split(path, ".") {
		switch tv := v.(type) {
		case map[string]any:
			v = tv[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(tv) {
				return nil
			}
			v = tv[i]
		default:
			return nil
		}
	}
	return v
}

// TestCheckRouteKeyFindingsAtTheirHandler: a route's own key is reported where it is in the
// JSON config (the handler's key), as every other finding is, not by a name of our own; a
// policy's key is reported at the policy.
func TestCheckRouteKeyFindingsAtTheirHandler(t *testing.T) {
	cf := checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t}",
		"\tsecurity_headers\n\thandle /api/* {\n\t\tpolicy_rate_limit p {\n\t\t\tkey {remote_host}\n\t\t}\n\t\trespond ok\n\t}")
	f, ok := codes(checkCaddyfile(t, cf))["ratelimit.key_remote_host"]
	if !ok {
		t.Fatalf("ratelimit.key_remote_host not reported:\n%s", cf)
	}
	if !strings.HasPrefix(f.Config, "apps.http.servers.") || adaptedAt(t, cf, f.Config) != "{http.request.remote.host}" {
		t.Fatalf("the route key's finding is at %q (%v), want the handler's key in the JSON config", f.Config, adaptedAt(t, cf, f.Config))
	}
	cf = checkSite("\t\tpolicy p {\n\t\t\tlimit 5/1m\n\t\t\tkey {remote_host}\n\t\t}", "\tsecurity_headers\n\tpolicy_rate_limit p")
	if f := codes(checkCaddyfile(t, cf))["ratelimit.key_remote_host"]; f.Config != "apps.hardening.policies.p.key" {
		t.Fatalf("the policy key's finding is at %q, want apps.hardening.policies.p.key", f.Config)
	}
}

// TestCheckGradeNot2xx: the Observatory refuses to grade an answer that is not 2xx ("Site did
// not respond with a 2xx HTTP status code"); `check --url` graded a 404 page as if it were the
// site. It still shows the grade of those headers, with a note saying the Observatory would
// not give one, `status` in --json, and --min-grade fails on it.
func TestCheckGradeNot2xx(t *testing.T) {
	port := testenv.FreePort(t)
	testcaddy.StartCaddy(t, fmt.Sprintf("http://localhost:%d {\n\tbind 127.0.0.1\n\trespond /missing \"gone\" 404\n\trespond \"ok\"\n}\n", port))
	missing := fmt.Sprintf("http://localhost:%d/missing", port)
	var out bytes.Buffer
	if err := runGrade(context.Background(), &out, missing, "", "", "", false); err != nil ||
		!strings.Contains(out.String(), "note: the MDN HTTP Observatory would not grade this answer (status 404;") {
		t.Fatalf("404, text: %v\n%s", err, out.String())
	}
	out.Reset()
	var rep observatory.Report
	if err := runGrade(context.Background(), &out, missing, "", "", "", true); err != nil || json.Unmarshal(out.Bytes(), &rep) != nil ||
		rep.Status != 404 || !strings.Contains(rep.Note, "status 404") {
		t.Fatalf("404, --json: %v\n%s", err, out.String())
	}
	out.Reset()
	err := runGrade(context.Background(), &out, missing, "", "", "F", false)
	if err == nil || !strings.Contains(err.Error(), "answered 404, not 2xx") {
		t.Fatalf("404 with --min-grade F: %v, want a failure", err)
	}

	// The site's page: no note, and the same gate passes.
	out.Reset()
	page := fmt.Sprintf("http://localhost:%d/", port)
	if err := runGrade(context.Background(), &out, page, "", "", "F", false); err != nil || strings.Contains(out.String(), "note:") {
		t.Fatalf("200 with --min-grade F: %v\n%s", err, out.String())
	}
}

// TestCheckJSONShape: `check --json` left `config` out of a finding that has no place in the
// JSON config (config.invalid for a file its adapter refuses, or JSON that does not decode),
// so a consumer reading findings[].config met a missing key; every finding now has the same
// six keys, `config` null where there is no place.
func TestCheckJSONShape(t *testing.T) {
	dir := t.TempDir()
	bad, good := dir+"/bad.caddyfile", dir+"/good.caddyfile"
	if err := writeFile(bad, "example.com {\n\tfoo\n}\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(good, checkSite("", "\tsecurity_headers {\n\t\thsts max-age=600\n\t}")); err != nil {
		t.Fatal(err)
	}
	for file, wantConfig := range map[string]bool{bad: false, good: true} {
		cmd := checkCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"--config", file, "--json"})
		_ = cmd.Execute()
		var rep struct{ Findings []map[string]any }
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Findings) == 0 {
			t.Fatalf("%s: %v\n%s", file, err, out.String())
		}
		for _, f := range rep.Findings {
			for _, k := range []string{"code", "severity", "module", "config", "message", "fix"} {
				if _, ok := f[k]; !ok {
					t.Errorf("%s: finding %v has no %q", file, f["code"], k)
				}
			}
			if at, isString := f["config"].(string); isString != wantConfig || isString && at == "" {
				t.Errorf("%s: finding %v has config %#v, want a path: %t, else null", file, f["code"], f["config"], wantConfig)
			}
		}
	}
}

// TestCheckCriticalAppRedis: a `check redis` on the hardening app's own Redis marked critical
// passed the check silently, though the README warns against it: when that Redis fails, /ready
// fails on every instance at once and the load balancer has no endpoint left, while the
// modules would have gone on from memory. It is now monitoring.critical_shared_redis at the
// check's `critical`; the same check without `critical`, or on another Redis, is not.
func TestCheckCriticalAppRedis(t *testing.T) {
	global := "\t\tredis redis://127.0.0.1:1/0"
	site := func(check string) string {
		return checkSite(global, "\tsecurity_headers\n\thandle_path /mon/* {\n\t\tmonitoring {\n"+check+"\n\t\t}\n\t}")
	}
	f, ok := codes(checkCaddyfile(t, site("\t\t\tcheck redis {\n\t\t\t\tcritical\n\t\t\t}")))["monitoring.critical_shared_redis"]
	if !ok || f.Severity != Warning || !strings.HasSuffix(f.Config, ".checks.0.critical") ||
		!strings.Contains(f.Message, "every instance") {
		t.Fatalf("critical check of the app's Redis: %+v", f)
	}
	for _, check := range []string{
		"\t\t\tcheck redis",
		"\t\t\tcheck redis sessions redis://127.0.0.1:2/0 {\n\t\t\t\tcritical\n\t\t\t}",
	} {
		if f, ok := codes(checkCaddyfile(t, site(check)))["monitoring.critical_shared_redis"]; ok {
			t.Errorf("%q: %+v", check, f)
		}
	}
}

// TestCheckCriticalAppRedisByURL: a critical `check redis` that names the hardening app's own
// Redis by its URL (`check redis shared {env.REDIS_URL}`, the variable the app's `redis` reads
// in deploy/kubernetes.yaml and render.yaml) is the same shared dependency as one without a
// URL, and passed the check silently: when that Redis fails, every replica's /ready fails at
// once. A URL of the same server (another db included, or a node of the app's Cluster) is now
// monitoring.critical_shared_redis too; one of another server is not.
func TestCheckCriticalAppRedisByURL(t *testing.T) {
	t.Setenv("CHECK_TEST_REDIS_URL", "redis://127.0.0.1:1/0")
	site := func(global, check string) string {
		return checkSite(global, "\tsecurity_headers\n\thandle_path /mon/* {\n\t\tmonitoring {\n"+check+"\n\t\t}\n\t}")
	}
	critical := func(url string) string {
		return "\t\t\tcheck redis shared " + url + " {\n\t\t\t\tcritical\n\t\t\t}"
	}
	for _, tc := range []struct {
		name, global, check string
		want                bool
	}{
		{"the app's URL", "\t\tredis redis://127.0.0.1:1/0", critical("redis://127.0.0.1:1/0"), true},
		{"another db of the app's server", "\t\tredis redis://127.0.0.1:1/0", critical("redis://127.0.0.1:1/5"), true},
		{"the app's variable", "\t\tredis {env.CHECK_TEST_REDIS_URL}", critical("{env.CHECK_TEST_REDIS_URL}"), true},
		{"a node of the app's Cluster", "\t\tredis {\n\t\t\tcluster 127.0.0.1:1 127.0.0.1:3\n\t\t}", critical("redis://127.0.0.1:3/0"), true},
		{"another server", "\t\tredis redis://127.0.0.1:1/0", critical("redis://127.0.0.1:2/0"), false},
		{"not critical", "\t\tredis redis://127.0.0.1:1/0", "\t\t\tcheck redis shared redis://127.0.0.1:1/0", false},
		{"no app Redis", "", critical("redis://127.0.0.1:1/0"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := codes(checkCaddyfile(t, site(tc.global, tc.check)))["monitoring.critical_shared_redis"]
			if ok != tc.want {
				t.Fatalf("finding %v, want %v: %+v", ok, tc.want, f)
			}
			if ok && (f.Severity != Warning || !strings.HasSuffix(f.Config, ".checks.0.critical") || !strings.Contains(f.Message, "check shared")) {
				t.Fatalf("finding: %+v", f)
			}
		})
	}
}

// TestCheckProbesRateLimited: a policy_rate_limit written at the site level runs before
// `handle_path /api/monitoring/*` (its directive order is before handle), so the probes spend
// the kubelet's or load balancer's bucket: a kubelet probes about 36 times a minute, shares its
// node's address with the clients kube-proxy's SNAT gives it, and meets the suspicious row if
// that address is detected. /live and /ready then answer 429 (the built binary did, from the
// sixth probe under `limit 5/1m`) and the orchestrator restarts the instance or takes it out
// of rotation, while `caddy hardening check` said nothing. It is now
// monitoring.probes_rate_limited, naming the probes and pointing at the policy_rate_limit.
func TestCheckProbesRateLimited(t *testing.T) {
	const mon = "\thandle_path /api/monitoring/* {\n\t\tmonitoring\n\t}\n\trespond ok"
	const policies = "\t\tpolicy public {\n\t\t\tlimit 5/1m burst 5\n\t\t}\n\t\tpolicy dry {\n\t\t\tlimit 5/1m\n\t\t\tshadow on\n\t\t}"
	for _, c := range []struct {
		name, global, site string
		want               bool
	}{
		{"site level", policies, "\tpolicy_rate_limit public\n" + mon, true},
		{"inside handle_path, before monitoring", policies, "\thandle_path /api/monitoring/* {\n\t\tpolicy_rate_limit public\n\t\tmonitoring\n\t}\n\trespond ok", true},
		{"matcher leaves the probes out", policies, "\t@limited not path /api/monitoring/live /api/monitoring/ready /api/monitoring/simple-health /api/monitoring/health\n\tpolicy_rate_limit @limited public\n" + mon, false},
		{"in another handle", policies, "\thandle /api/* {\n\t\tpolicy_rate_limit public\n\t\trespond api\n\t}\n" + mon, false},
		{"a shadow policy refuses nothing", policies, "\tpolicy_rate_limit dry\n" + mon, false},
		{"rate_limit off", policies + "\n\t\tfeatures {\n\t\t\trate_limit off\n\t\t}", "\tpolicy_rate_limit public\n" + mon, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cf := checkSite(c.global, "\tsecurity_headers\n"+c.site)
			f, ok := codes(checkCaddyfile(t, cf))["monitoring.probes_rate_limited"]
			if ok != c.want {
				t.Fatalf("reported: %v, want %v: %+v\n%s", ok, c.want, f, cf)
			}
			if !ok {
				return
			}
			if f.Severity != Warning || !strings.Contains(f.Message, "/api/monitoring/live") || !strings.Contains(f.Message, "/api/monitoring/ready") ||
				!strings.Contains(f.Message, "policy_rate_limit public") || !strings.Contains(f.Config, ".handle.") || !strings.Contains(f.Fix, "not path") {
				t.Fatalf("finding: %+v", f)
			}
		})
	}
}

// TestCheckKeyBeforeAuthHeaderOrder: ratelimit.key_before_auth for a header key follows what
// each line reads. A header deleted before the line (request_header -X-Tenant, a common step
// against spoofing) and set after it (forward_auth's copy_headers) leaves the key always empty,
// and was not reported: the delete counted as setting it. A header deleted after the line (the
// header stripped before proxying) changes nothing the line read, and was reported as set
// after it. Each finding is at its own line's handler: with two lines of one policy in a server,
// it said only the server, and two wrong lines were one finding.
func TestCheckKeyBeforeAuthHeaderOrder(t *testing.T) {
	const code = "ratelimit.key_before_auth"
	policy := "\t\tpolicy tenants {\n\t\t\tlimit 5/1m\n\t\t\tkey {header.X-Tenant}\n\t\t}"
	fwd := "forward_auth 127.0.0.1:1 {\n\t\t\turi /verify\n\t\t\tcopy_headers X-Tenant\n\t\t}"
	for _, tc := range []struct {
		name, site string
		want       bool
	}{
		{"deleted before, set after", "\troute {\n\t\trequest_header -X-Tenant\n\t\tpolicy_rate_limit tenants\n\t\t" + fwd + "\n\t}", true},
		{"deleted before, set before", "\troute {\n\t\trequest_header -X-Tenant\n\t\t" + fwd + "\n\t\tpolicy_rate_limit tenants\n\t}", false},
		{"deleted after", "\troute {\n\t\tpolicy_rate_limit tenants\n\t\trequest_header -X-Tenant\n\t}", false},
		{"set after", "\troute {\n\t\tpolicy_rate_limit tenants\n\t\trequest_header X-Tenant {host}\n\t}", true},
	} {
		cf := checkSite(policy, "\tsecurity_headers\n"+tc.site)
		f, ok := codes(checkCaddyfile(t, cf))[code]
		if ok != tc.want {
			t.Errorf("%s: %s reported %v, want %v: %+v\n%s", tc.name, code, ok, tc.want, f, cf)
		}
		// A deleted header is no client's choice: the message says what the line reads.
		if deleted := strings.HasPrefix(tc.name, "deleted before"); ok && deleted != strings.Contains(f.Message, "always empty") {
			t.Errorf("%s: message %q", tc.name, f.Message)
		}
	}

	// Two lines of one policy, the first before the request_header that sets the key's header,
	// the second after it: the finding names the first line's handler, and only it.
	for _, site := range []string{
		"\troute {\n\t\tpolicy_rate_limit tenants {\n\t\t\tmessage first\n\t\t}\n\t\trequest_header X-Tenant {host}\n\t\tpolicy_rate_limit tenants {\n\t\t\tmessage second\n\t\t}\n\t}",
		"\troute {\n\t\tpolicy_rate_limit users {\n\t\t\tmessage first\n\t\t}\n\t\tbasic_auth {\n\t\t\talice $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG\n\t\t}\n\t\tpolicy_rate_limit users {\n\t\t\tmessage second\n\t\t}\n\t}",
	} {
		cf := checkSite(policy+"\n\t\tpolicy users {\n\t\t\tlimit 5/1m\n\t\t\tkey {http.auth.user.id}\n\t\t}", "\tsecurity_headers\n"+site)
		var at []string
		for _, f := range checkCaddyfile(t, cf).Findings {
			if f.Code == code {
				at = append(at, f.Config)
			}
		}
		if len(at) != 1 {
			t.Fatalf("%s reported at %q, want once, at the first line\n%s", code, at, cf)
		}
		h, _ := adaptedAt(t, cf, at[0]).(map[string]any)
		if h["handler"] != "policy_rate_limit" || h["message"] != "first" {
			t.Errorf("%s at %q, which is %v; want the first policy_rate_limit line\n%s", code, at[0], h, cf)
		}
	}

	// Two wrong lines in one server are two findings.
	cf := checkSite(policy, "\tsecurity_headers\n\troute {\n\t\tpolicy_rate_limit tenants {\n\t\t\tmessage first\n\t\t}\n\t\tpolicy_rate_limit tenants {\n\t\t\tmessage second\n\t\t}\n\t\trequest_header X-Tenant {host}\n\t}")
	n := 0
	for _, f := range checkCaddyfile(t, cf).Findings {
		if f.Code == code {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%s reported %d times for two lines before the request_header, want 2", code, n)
	}
}
