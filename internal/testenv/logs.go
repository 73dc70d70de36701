package testenv

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
)

// LogEntry is one JSON log line: its level, logger, message, and every field.
type LogEntry map[string]any

// Msg is the entry's message.
func (e LogEntry) Msg() string { s, _ := e["msg"].(string); return s }

// Level is the entry's level (debug, info, warn, error).
func (e LogEntry) Level() string { s, _ := e["level"].(string); return s }

// Logger is the entry's logger name.
func (e LogEntry) Logger() string { s, _ := e["logger"].(string); return s }

// Str is a string field of the entry.
func (e LogEntry) Str(key string) string { s, _ := e[key].(string); return s }

// Filter keeps the entries for which keep says true.
func Filter(entries []LogEntry, keep func(LogEntry) bool) []LogEntry {
	var out []LogEntry
	for _, e := range entries {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// ReadLogFile decodes a file of JSON log lines; other lines are skipped.
func ReadLogFile(path string) []LogEntry {
	b, _ := os.ReadFile(path)
	return ParseLogs(string(b))
}

// ParseLogs decodes JSON log lines (Caddy's format); other lines are skipped.
func ParseLogs(text string) []LogEntry {
	var out []LogEntry
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var e LogEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}
