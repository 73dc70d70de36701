package caddymodule

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// writeProblem answers with an RFC 9457 `application/problem+json` body. Every refusal our
// handlers make (400 path blocked, 403 suspicious client, 429 rate limited, 503 breaker open,
// 413 report too large) goes through here, so clients parse one shape. ext adds members such as
// "retry_after"; it never carries secrets or internal addresses. The response is never cached.
func writeProblem(w http.ResponseWriter, status int, title, detail string, ext map[string]any) error {
	body := make(map[string]any, len(ext)+4)
	for k, v := range ext {
		body[k] = v
	}
	body["type"] = "about:blank"
	body["title"] = title
	body["status"] = status
	if detail != "" {
		body["detail"] = detail
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}
