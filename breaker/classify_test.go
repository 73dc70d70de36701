package breaker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	def, err := ParseStatuses(nil)
	if err != nil {
		t.Fatal(err)
	}
	only503, _ := ParseStatuses([]string{"503"})
	with404, _ := ParseStatuses([]string{"404", "5xx"})
	errDial := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	errNotFound := errors.New("open /srv/missing: no such file or directory")
	for _, tc := range []struct {
		name   string
		c      Classifier
		res    Result
		want   Outcome
		reason Reason
	}{
		{"200", Classifier{Statuses: def}, Result{Status: 200}, Success, ""},
		{"404 from the upstream is an answer", Classifier{Statuses: def}, Result{Status: 404}, Success, ""},
		{"500", Classifier{Statuses: def}, Result{Status: 500}, Failure, "status"},
		{"503", Classifier{Statuses: def}, Result{Status: 503}, Failure, "status"},
		{"501 (a method the upstream does not know) is an answer", Classifier{Statuses: def}, Result{Status: 501}, Success, ""},
		{"500 not in the configured set", Classifier{Statuses: only503}, Result{Status: 500}, Success, ""},
		{"dial refused (502 error)", Classifier{Statuses: only503}, Result{Err: errDial, ErrStatus: 502}, Failure, "error"},
		{"timeout (504 error)", Classifier{Statuses: def}, Result{Err: errDial, ErrStatus: 504}, Failure, "error"},
		{"error without status", Classifier{Statuses: def}, Result{Err: errDial}, Failure, "error"},
		{"client error (413) is excluded", Classifier{Statuses: def}, Result{Err: errDial, ErrStatus: 413}, Excluded, ""},
		{"error 404 in failure_status", Classifier{Statuses: with404}, Result{Err: errNotFound, ErrStatus: 404}, Failure, "status"},
		{"error 404 not in failure_status", Classifier{Statuses: def}, Result{Err: errNotFound, ErrStatus: 404}, Excluded, ""},
		{"dial refused not in failure_status", Classifier{Statuses: with404}, Result{Err: errDial, ErrStatus: 502}, Failure, "error"},
		{"error without status, 404 configured", Classifier{Statuses: with404}, Result{Err: errDial}, Failure, "error"},
		{"client gone, 404 configured", Classifier{Statuses: with404}, Result{Err: errNotFound, ErrStatus: 404, ClientGone: true}, Excluded, ""},
		{"client gone", Classifier{Statuses: def}, Result{Err: context.Canceled, ErrStatus: 502, ClientGone: true}, Excluded, ""},
		{"client gone after slow_threshold (a hung upstream) is slow", Classifier{Statuses: def, SlowThreshold: time.Second}, Result{Err: context.Canceled, ErrStatus: 499, ClientGone: true, Latency: 2 * time.Second}, Failure, "slow"},
		{"499 written (reverse_proxy's client gone) after slow_threshold is slow", Classifier{Statuses: def, SlowThreshold: time.Second}, Result{Status: 499, Latency: 2 * time.Second}, Failure, "slow"},
		{"client gone before slow_threshold", Classifier{Statuses: def, SlowThreshold: time.Second}, Result{Err: context.Canceled, ErrStatus: 499, ClientGone: true, Latency: time.Second}, Excluded, ""},
		{"client gone, slow_threshold off", Classifier{Statuses: def}, Result{Err: context.Canceled, ErrStatus: 499, ClientGone: true, Latency: time.Hour}, Excluded, ""},
		{"body unreadable after slow_threshold is the client's", Classifier{Statuses: def, SlowThreshold: time.Second}, Result{Err: context.Canceled, ClientGone: true, ClientFault: true, Latency: time.Hour}, Excluded, ""},
		{"request body unreadable (502 error)", Classifier{Statuses: def}, Result{Err: errors.New("invalid byte in chunk length"), ErrStatus: 502, ClientFault: true}, Excluded, ""},
		{"request body unreadable, 500 written", Classifier{Statuses: def}, Result{Status: 500, ClientFault: true}, Excluded, ""},
		{"refused before the upstream, 503", Classifier{Statuses: def}, Result{Status: 503, NotForwarded: true}, Excluded, ""},
		{"refused before the upstream, 429", Classifier{Statuses: def}, Result{Status: 429, NotForwarded: true}, Excluded, ""},
		{"Upgrade refused by the HTTP/2 transport (502 error)", Classifier{Statuses: def}, Result{Err: fmt.Errorf("wrapped: %w", errors.New(`http2: invalid Upgrade request header: ["websocket"]`)), ErrStatus: 502}, Excluded, ""},
		{"header list over the upstream's limit (502 error)", Classifier{Statuses: def}, Result{Err: errors.New("request header list larger than peer's advertised limit"), ErrStatus: 502}, Excluded, ""},
		{"a response header the HTTP/2 client refuses is the upstream's", Classifier{Statuses: def}, Result{Err: errors.New(`invalid header field value for "x"`), ErrStatus: 502}, Failure, "error"},
		{"499 written", Classifier{Statuses: def}, Result{Status: 499}, Excluded, ""},
		{"slow", Classifier{Statuses: def, SlowThreshold: time.Second}, Result{Status: 200, Latency: 2 * time.Second}, Failure, "slow"},
		{"fast enough", Classifier{Statuses: def, SlowThreshold: time.Second}, Result{Status: 200, Latency: time.Second}, Success, ""},
		{"slow threshold off", Classifier{Statuses: def}, Result{Status: 200, Latency: time.Hour}, Success, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := tc.c.Classify(tc.res)
			if got != tc.want || reason != tc.reason {
				t.Fatalf("Classify = %s %q, want %s %q", got, reason, tc.want, tc.reason)
			}
		})
	}
}

func TestParseStatuses(t *testing.T) {
	s, err := ParseStatuses([]string{"4XX", "502"})
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[int]bool{399: false, 400: true, 429: true, 499: true, 500: false, 502: true, 503: false, 0: false, 700: false, -1: false} {
		if s.Has(code) != want {
			t.Errorf("Has(%d) = %v", code, !want)
		}
	}
	def, _ := ParseStatuses(nil)
	if !def.Has(500) || !def.Has(599) || def.Has(499) {
		t.Fatal("the default is not 5xx")
	}
	// 501 is an answer to a method the upstream does not know, which any client can send.
	if def.Has(501) {
		t.Fatal("the 5xx class counts 501 Not Implemented")
	}
	if with501, _ := ParseStatuses([]string{"501", "5xx"}); !with501.Has(501) {
		t.Fatal("501 written as a code does not count")
	}
	for _, bad := range []string{"6xx", "0xx", "600", "99", "abc", "5x", "", "2xx", "1xx", "3xx", "200", "302", "399"} {
		if _, err := ParseStatuses([]string{bad}); err == nil || !strings.Contains(err.Error(), "expected a code from 400 to 599 or a class 4xx or 5xx") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
}

func TestStatusSetString(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, "5xx"},
		{[]string{"503", "404"}, "404 503"},
		{[]string{"5xx", "429", "502"}, "429 5xx"},
		{[]string{"5xx", "501"}, "501 5xx"},
		{[]string{"500", "502", "503"}, "500 502 503"},
	} {
		s, err := ParseStatuses(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestGRPCStatus(t *testing.T) {
	for value, want := range map[string]int{
		"0": 200, "1": 499, "2": 500, "3": 400, "4": 504, "8": 429, "12": 501, "13": 500,
		"14": 503, "15": 500, "16": 401, "17": 500, "-1": 500, "x": 500, "": 500,
	} {
		if got := GRPCStatus(value); got != want {
			t.Errorf("grpc-status %q: %d, want %d", value, got, want)
		}
	}
}
