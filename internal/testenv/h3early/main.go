// Command h3early is the HTTP/3 client of the early-data tests (testenv.H3Client): it sends
// requests, each on a new QUIC connection that resumes the last one's TLS session, so that a
// GET_0RTT goes out as TLS early data. It runs in a process of its own, built without -race:
// quic-go v0.63.0's client races with itself on a 0-RTT dial (quic-go/quic-go#4303, the
// transport parameters applied while http3 opens its control stream), which would fail the
// -race test that drives it, whatever the server under test does.
//
// It reads one JSON request per line on stdin and writes one JSON answer per line on stdout.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// request is one line of stdin.
type request struct {
	Method string `json:"method"` // GET, or GET_0RTT (http3.MethodGet0RTT)
	URL    string `json:"url"`
	Host   string `json:"host"`   // the Host (and TLS server name's) authority
	Ticket bool   `json:"ticket"` // wait for the session ticket of this request's connection
}

// answer is one line of stdout.
type answer struct {
	Code  int    `json:"code"`
	Body  string `json:"body"`
	Early bool   `json:"early"` // the answer's Early-Data header is 1
	Err   string `json:"error,omitempty"`
}

func main() {
	tickets := &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(8), put: make(chan struct{}, 8)}
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		a := answer{}
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			a.Err = err.Error()
		} else {
			a = roundTrip(tickets, req)
		}
		if err := out.Encode(a); err != nil {
			os.Exit(1)
		}
	}
}

func roundTrip(tickets *ticketCache, r request) answer {
	for len(tickets.put) > 0 {
		<-tickets.put
	}
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tickets},
		QUICConfig:      &quic.Config{MaxIdleTimeout: 5 * time.Second, HandshakeIdleTimeout: 5 * time.Second},
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, nil)
	if err != nil {
		return answer{Err: err.Error()}
	}
	req.Host = r.Host
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return answer{Err: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{Err: err.Error()}
	}
	if r.Ticket {
		select {
		case <-tickets.put:
		case <-time.After(10 * time.Second):
			return answer{Err: fmt.Sprintf("%s %s: no session ticket from the server", r.Method, r.URL)}
		}
	}
	return answer{Code: resp.StatusCode, Body: string(b), Early: resp.Header.Get("Early-Data") == "1"}
}

// ticketCache tells when a connection stored a session ticket.
type ticketCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}
