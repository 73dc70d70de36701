package csp

import (
	"strings"
	"testing"
)

func TestValidatePermissionsPolicy(t *testing.T) {
	for _, row := range []struct {
		value string
		err   string // "" when accepted
	}{
		{DefaultPermissionsPolicy, ""},
		{`geolocation=(self "https://maps.example"), camera=*`, ""},
		{`geolocation=self`, ""},
		{`geolocation=()  ,	camera=( self  "https://a.example:8443" )`, ""},
		{`geolocation=(self "https://*.example.com")`, ""},
		{`geolocation=();report-to=endpoint, camera=()`, ""},
		{`geolocation=("http://localhost:3000/")`, ""},
		{`publickey-credentials-get=(self), interest-cohort=()`, ""},

		// Chromium ignores the whole header.
		{`Camera=(), geolocation=()`, "lower case"},
		{`camera=();geolocation=()`, `features are separated by ","`},
		{`camera=(), geolocation=(),`, "ends with"},
		{`camera=() geolocation=()`, `expected ","`},
		{`camera=(self`, "no closing"},
		{`camera=(self"https://a.example")`, "expected a space"},
		{`camera=("https://a.example)`, "no closing quote"},
		{``, "empty"},
		{`camera`, "expected feature=(allowlist)"},
		{`camera 'none'`, "expected feature=(allowlist)"},
		{`camera=`, "expected an allowlist"},
		// Chromium drops the member from the allowlist.
		{`geolocation=(self https://a.example)`, "double quotes"},
		{`geolocation=(none)`, "geolocation=()"},
		{`geolocation=('none')`, "geolocation=()"},
		{`geolocation=('self')`, "without quotes"},
		{`geolocation=(self src)`, "iframe"},
		{`geolocation=(1)`, "not an allowlist member"},
		{`geolocation=?0`, "not an allowlist member"},
		{`geolocation=("a.example")`, "not an origin"},
		{`geolocation=("https://user@a.example")`, "not an origin"},
		{`geolocation=("*")`, "without quotes"},
		{`geolocation=("https://a.example/path")`, "ignore what follows"},
		// The last one wins, silently.
		{`geolocation=(), geolocation=(self)`, "given twice"},
		// A repeat in an allowlist changes nothing: a slip, refused as every repeat is.
		{`geolocation=(self self)`, "self is given twice in the allowlist"},
		{`geolocation=("https://a.example" "https://A.EXAMPLE")`, `"https://A.EXAMPLE" is given twice`},
	} {
		err := ValidatePermissionsPolicy(row.value)
		switch {
		case row.err == "" && err != nil:
			t.Errorf("%q refused: %v", row.value, err)
		case row.err != "" && err == nil:
			t.Errorf("%q accepted; want an error with %q", row.value, row.err)
		case row.err != "" && !strings.Contains(err.Error(), row.err):
			t.Errorf("%q: error %q does not say %q", row.value, err, row.err)
		}
	}
}

func TestUnknownPermissionsFeatures(t *testing.T) {
	for value, want := range map[string]string{
		DefaultPermissionsPolicy: "",
		`camra=(), geolocation=(self "https://a.example,b"), microfone=*`: "camra microfone",
		`browsing-topics=(), interest-cohort=(), web-share=(self)`:        "",
		`geolocation=();report-to=x, usb=()`:                              "",
		`ch-ua-model=("https://cdn.example"), Gyroscope=()`:               "",
	} {
		if got := strings.Join(UnknownPermissionsFeatures(value), " "); got != want {
			t.Errorf("UnknownPermissionsFeatures(%q) = %q, want %q", value, got, want)
		}
	}
}
