package csp

import (
	"slices"
	"strings"
)

// knownPermissionsFeatures are the Permissions-Policy feature names that browsers recognize
// today. A name outside it is most likely misspelt (`camra=()`): Chromium logs "Unrecognized
// feature" in the console and the feature keeps its default, with nothing said to the
// server. The list grows with every browser release, so an unknown name is a startup warning,
// never a refusal.
//
// Sources:
//   - Chromium 156 (Debian's build), measured: every name its header parser accepts without
//     "Unrecognized feature" (document.featurePolicy.features() lists most of them), i.e.
//     services/network/public/cpp/permissions_policy/permissions_policy_features.json5;
//     TestBrowserKnowsThePermissionsFeatures checks them against the installed Chromium.
//   - Google Chrome's Privacy Sandbox features, in the same json5 but off in Debian's build:
//     attribution-reporting, join-ad-interest-group, run-ad-auction, private-aggregation,
//     shared-storage, shared-storage-select-url.
//   - Firefox: dom/security/featurepolicy/FeaturePolicyUtils.cpp (sSupportedFeatures), whose
//     names not in Chromium are document-domain and web-share.
var knownPermissionsFeatures = setOf(slices.Concat(chromiumPermissionsFeatures, []string{
	// Google Chrome only (Privacy Sandbox).
	"attribution-reporting", "join-ad-interest-group", "run-ad-auction", "private-aggregation",
	"shared-storage", "shared-storage-select-url",
	// Firefox only.
	"document-domain", "web-share",
})...)

// chromiumPermissionsFeatures are the names Debian's Chromium 156 recognizes.
var chromiumPermissionsFeatures = []string{
	"accelerometer", "aria-notify", "autoplay", "browsing-topics", "camera",
	"captured-surface-control", "clipboard-read", "clipboard-write", "compute-pressure",
	"cross-origin-isolated", "deferred-fetch", "deferred-fetch-minimal",
	"digital-credentials-create", "digital-credentials-get", "display-capture",
	"encrypted-media", "focus-without-user-activation", "fullscreen", "gamepad", "geolocation",
	"gyroscope", "hid", "identity-credentials-get", "idle-detection", "interest-cohort",
	"keyboard-map", "language-detector", "language-model", "local-fonts", "local-network",
	"local-network-access", "loopback-network", "magnetometer", "media-playback-while-not-visible",
	"microphone", "midi", "on-device-speech-recognition", "otp-credentials", "payment",
	"picture-in-picture", "private-state-token-issuance", "private-state-token-redemption",
	"publickey-credentials-create", "publickey-credentials-get", "rewriter", "screen-wake-lock",
	"serial", "speaker-selection", "storage-access", "summarizer", "sync-xhr", "translator",
	"unload", "usb", "window-management", "writer", "xr-spatial-tracking",
	// Client hints (Chromium), which a policy delegates to third parties.
	"ch-device-memory", "ch-downlink", "ch-dpr", "ch-ect", "ch-prefers-color-scheme",
	"ch-prefers-reduced-motion", "ch-prefers-reduced-transparency", "ch-rtt", "ch-save-data",
	"ch-ua", "ch-ua-arch", "ch-ua-bitness", "ch-ua-form-factors", "ch-ua-full-version",
	"ch-ua-full-version-list", "ch-ua-high-entropy-values", "ch-ua-mobile", "ch-ua-model",
	"ch-ua-platform", "ch-ua-platform-version", "ch-ua-wow64", "ch-viewport-height",
	"ch-viewport-width", "ch-width",
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// UnknownPermissionsFeatures returns the feature names of a Permissions-Policy value (one that
// ValidatePermissionsPolicy accepts) that no browser listed in knownPermissionsFeatures
// recognizes, in the order written.
func UnknownPermissionsFeatures(v string) []string {
	var unknown []string
	p := ppParser{s: strings.Trim(v, " ")}
	for !p.done() {
		p.ows()
		name, err := p.key()
		if err != nil {
			return unknown
		}
		if !knownPermissionsFeatures[name] {
			unknown = append(unknown, name)
		}
		// Skip to the next member: a comma outside quotes.
		for quoted := false; !p.done(); p.i++ {
			c := p.s[p.i]
			if c == '"' {
				quoted = !quoted
			} else if c == ',' && !quoted {
				p.i++
				break
			}
		}
	}
	return unknown
}
