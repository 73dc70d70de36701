package csp

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// NonceToken is the source expression that stands for the response's nonce in a configured
// policy: `script-src 'nonce' 'strict-dynamic'` is sent as `script-src 'nonce-<nonce>' ...`.
const NonceToken = "'nonce'"

// Directive is one policy directive: a name and its values (source expressions or tokens).
type Directive struct {
	Name   string   `json:"name"`
	Values []string `json:"values,omitempty"`
}

// Policy is an ordered list of directives. The zero value is an empty policy.
type Policy struct {
	Directives []Directive
}

// Parse reads a serialized policy (`default-src 'self'; script-src 'nonce'`) and validates it.
func Parse(s string) (Policy, error) {
	var p Policy
	for _, part := range strings.Split(s, ";") {
		fields := strings.Fields(part)
		if len(fields) == 0 {
			continue
		}
		name := strings.ToLower(fields[0])
		if _, dup := p.index(name); dup {
			return Policy{}, fmt.Errorf("directive %s given twice (browsers ignore the second)", name)
		}
		p.Directives = append(p.Directives, Directive{Name: name, Values: fields[1:]})
	}
	return p, p.Validate()
}

// Clone returns a deep copy, so a preset can be edited without changing it.
func (p Policy) Clone() Policy {
	c := Policy{Directives: make([]Directive, len(p.Directives))}
	for i, d := range p.Directives {
		c.Directives[i] = Directive{Name: d.Name, Values: append([]string(nil), d.Values...)}
	}
	return c
}

func (p Policy) index(name string) (int, bool) {
	for i, d := range p.Directives {
		if d.Name == name {
			return i, true
		}
	}
	return -1, false
}

// Get returns a directive's values and whether the policy has it.
func (p Policy) Get(name string) ([]string, bool) {
	if i, ok := p.index(name); ok {
		return p.Directives[i].Values, true
	}
	return nil, false
}

// Set replaces a directive's values, or appends the directive when the policy lacks it.
func (p *Policy) Set(name string, values ...string) {
	name = strings.ToLower(name)
	if i, ok := p.index(name); ok {
		p.Directives[i].Values = values
		return
	}
	p.Directives = append(p.Directives, Directive{Name: name, Values: values})
}

// Remove drops a directive; it reports whether the policy had it.
func (p *Policy) Remove(name string) bool {
	i, ok := p.index(strings.ToLower(name))
	if ok {
		p.Directives = append(p.Directives[:i], p.Directives[i+1:]...)
	}
	return ok
}

// UsesNonce reports whether any directive carries the 'nonce' token.
func (p Policy) UsesNonce() bool {
	for _, d := range p.Directives {
		for _, v := range d.Values {
			if v == NonceToken {
				return true
			}
		}
	}
	return false
}

// String serializes the policy with the 'nonce' token left in place.
func (p Policy) String() string {
	var b strings.Builder
	for i, d := range p.Directives {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(d.Name)
		for _, v := range d.Values {
			b.WriteByte(' ')
			b.WriteString(v)
		}
	}
	return b.String()
}

// Compile turns the policy into a Template that renders it per response cheaply.
func (p Policy) Compile() Template {
	parts := strings.Split(p.String(), NonceToken)
	for i := 1; i < len(parts); i++ {
		parts[i-1] += "'nonce-"
		parts[i] = "'" + parts[i]
	}
	t := Template{parts: parts}
	for _, s := range parts {
		t.size += len(s)
	}
	return t
}

// Template is a compiled policy: fixed text with the nonce's places between.
type Template struct {
	parts []string
	size  int
}

// UsesNonce reports whether rendering inserts the nonce.
func (t Template) UsesNonce() bool { return len(t.parts) > 1 }

// RenderNewNonce makes a fresh nonce and renders the policy with it, in one allocation for
// both (the nonce is a substring of the policy when the policy uses it).
func (t Template) RenderNewNonce() (policy, nonce string) {
	if len(t.parts) == 1 {
		return t.parts[0], NewNonce()
	}
	var raw [NonceBytes]byte
	_, _ = rand.Read(raw[:])
	var enc [24]byte
	base64.StdEncoding.Encode(enc[:], raw[:])
	var b strings.Builder
	b.Grow(t.size + (len(t.parts)-1)*len(enc))
	for i, s := range t.parts {
		if i > 0 {
			b.Write(enc[:])
		}
		b.WriteString(s)
	}
	policy = b.String()
	at := len(t.parts[0])
	return policy, policy[at : at+len(enc)]
}

// Render returns the policy with the response's nonce in every nonce place, in one allocation.
func (t Template) Render(nonce string) string {
	if len(t.parts) == 1 {
		return t.parts[0]
	}
	var b strings.Builder
	b.Grow(t.size + (len(t.parts)-1)*len(nonce))
	for i, s := range t.parts {
		if i > 0 {
			b.WriteString(nonce)
		}
		b.WriteString(s)
	}
	return b.String()
}
