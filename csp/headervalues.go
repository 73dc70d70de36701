package csp

import (
	"fmt"
	"slices"
	"strings"
)

// ParseReferrerPolicy checks a Referrer-Policy value: one policy, or a comma-separated list of
// them, where browsers use the last one they know (so `no-referrer,
// strict-origin-when-cross-origin` falls back to no-referrer in a browser that lacks the
// second). Each member must be one of ReferrerPolicyValues (case-insensitive): a browser skips
// a member it does not know with nothing said, which for a misspelt last member means the
// fallback, or no policy at all. It returns the value as sent, each member in its canonical
// spelling, separated by ", ".
func ParseReferrerPolicy(v string) (string, error) {
	var out []string
	for member := range strings.SplitSeq(v, ",") {
		member = strings.Trim(member, " \t")
		if member == "" {
			return "", fmt.Errorf("referrer_policy %q has an empty member; expected one of %s, or a comma-separated list of them (the last one a browser knows applies)",
				v, strings.Join(ReferrerPolicyValues, ", "))
		}
		canon, err := OneOf("referrer_policy", member, ReferrerPolicyValues)
		if err != nil {
			return "", fmt.Errorf("%w, or a comma-separated list of them (the last one a browser knows applies)", err)
		}
		if slices.Contains(out, canon) {
			// Harmless, but a slip: a list is read for its fallbacks, and a repeat is none.
			return "", fmt.Errorf("referrer_policy %q: %s is given twice; give each member once (the last one a browser knows applies)", v, canon)
		}
		out = append(out, canon)
	}
	return strings.Join(out, ", "), nil
}

// ParseCrossOriginPolicy checks a Cross-Origin-Opener-Policy or Cross-Origin-Embedder-Policy
// value (option names the Caddyfile option in errors): a structured-field item (RFC 8941)
// whose token is one of allowed (case-insensitive here; browsers compare it exactly, so it is
// sent in its canonical spelling), with an optional `report-to="<endpoint>"` parameter naming
// a Reporting-Endpoints member that receives the policy's reports. Browsers ignore the whole
// header when it is not such an item (a space before `;`, a trailing `;`), and the endpoint
// when its value is not a quoted string; both are refused here, as is any other parameter
// (browsers ignore it: usually a misspelt report-to). It returns the value as sent.
func ParseCrossOriginPolicy(option, v string, allowed []string) (string, error) {
	expected := fmt.Sprintf(`expected one of %s, optionally followed by ; report-to="<endpoint>"`, strings.Join(allowed, ", "))
	tok, params, hasParams := strings.Cut(strings.Trim(v, " \t"), ";")
	if hasParams && strings.TrimRight(tok, " \t") != tok {
		return "", fmt.Errorf("%s %q: no space before \";\" (browsers ignore the whole header otherwise); %s", option, v, expected)
	}
	canon, err := OneOf(option, tok, allowed)
	if err != nil {
		return "", fmt.Errorf("%s %q: %s", option, v, expected)
	}
	if !hasParams {
		return canon, nil
	}
	p := ppParser{s: params}
	endpoint := ""
	for first := true; first || p.eat(';'); first = false {
		for p.eat(' ') {
		}
		key, err := p.key()
		if err != nil || key != "report-to" {
			return "", fmt.Errorf("%s %q: the only parameter browsers read is report-to; %s", option, v, expected)
		}
		if endpoint != "" {
			return "", fmt.Errorf("%s %q: report-to is given twice; %s", option, v, expected)
		}
		if !p.eat('=') || !p.eat('"') {
			return "", fmt.Errorf("%s %q: report-to takes the endpoint's name in double quotes (browsers ignore it otherwise); %s", option, v, expected)
		}
		q := ppParser{s: p.s[p.i:]}
		name, err := q.key()
		if err != nil || !q.eat('"') {
			return "", fmt.Errorf("%s %q: report-to names a Reporting-Endpoints member (lower-case letters, digits, _ - . *) in double quotes; %s", option, v, expected)
		}
		p.i += q.i
		endpoint = name
	}
	if !p.done() {
		return "", fmt.Errorf("%s %q: unexpected %q after the report-to parameter (browsers then ignore the whole header); %s", option, v, p.s[p.i:], expected)
	}
	return canon + `; report-to="` + endpoint + `"`, nil
}
