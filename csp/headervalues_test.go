package csp

import (
	"strings"
	"testing"
)

func TestParseReferrerPolicy(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "no-referrer", want: "no-referrer"},
		{in: "Strict-Origin-When-Cross-Origin", want: "strict-origin-when-cross-origin"},
		// A fallback list: browsers use the last member they know.
		{in: "no-referrer, strict-origin-when-cross-origin", want: "no-referrer, strict-origin-when-cross-origin"},
		{in: "no-referrer,strict-origin-when-cross-origin", want: "no-referrer, strict-origin-when-cross-origin"},
		{in: "no-referrer, strict-origin, No-Referrer", err: `no-referrer is given twice`},
		{in: "strict", err: `referrer_policy "strict": expected one of no-referrer,`},
		{in: "no-referrer, strict-origin-when-crossorigin", err: `referrer_policy "strict-origin-when-crossorigin": expected one of`},
		{in: "no-referrer strict-origin", err: `referrer_policy "no-referrer strict-origin": expected one of`},
		{in: "no-referrer,", err: "has an empty member"},
		{in: "", err: "has an empty member"},
	} {
		got, err := ParseReferrerPolicy(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %q %v, want %q", c.in, got, err, c.want)
		}
	}
}

func TestParseCrossOriginPolicy(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "same-origin", want: "same-origin"},
		{in: "Same-Origin", want: "same-origin"},
		// COOP and COEP reporting: report-to names a Reporting-Endpoints member.
		{in: `same-origin; report-to="coop"`, want: `same-origin; report-to="coop"`},
		{in: `same-origin;report-to="coop-1"`, want: `same-origin; report-to="coop-1"`},
		{in: `unsafe-none; report-to="e"`, want: `unsafe-none; report-to="e"`},
		{in: "same-site", err: "expected one of same-origin,"},
		{in: `same-origin ; report-to="coop"`, err: `no space before ";"`},
		{in: `same-origin; report-to=coop`, err: "report-to takes the endpoint's name in double quotes"},
		{in: `same-origin; report_to="coop"`, err: "the only parameter browsers read is report-to"},
		{in: `same-origin; report-to="Coop"`, err: "report-to names a Reporting-Endpoints member"},
		{in: `same-origin; report-to="coop`, err: "report-to names a Reporting-Endpoints member"},
		{in: `same-origin; report-to="a"; report-to="b"`, err: "report-to is given twice"},
		{in: `same-origin;`, err: "the only parameter browsers read is report-to"},
		{in: `same-origin; report-to="coop" x`, err: `unexpected " x" after the report-to parameter`},
		{in: `same-origin; report-to="coop", unsafe-none`, err: `unexpected ", unsafe-none"`},
	} {
		got, err := ParseCrossOriginPolicy("coop", c.in, COOPValues)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %q %v, want %q", c.in, got, err, c.want)
		}
	}
}
