package caddymodule

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// loadEnvFile sets the variables of a KEY=VALUE file that are not set already, with the rules
// of `caddy run --envfile` (Caddy v2.11.9's parseEnvFile, which caddycmd does not export): so
// that `caddy hardening check --envfile .env` lints the configuration `caddy run --envfile .env`
// loads. Blank lines and lines starting with # are skipped; `export ` before a key is dropped; a
// key with a space, or a value starting with white space, is refused with its line; a value is
// cut at its first #, quoted or not, and its trailing blanks dropped; a value in single or
// double quotes may go on over several lines until the line that ends with the quote.
func loadEnvFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--envfile: %v", err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		n++
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("--envfile %s: line %d: want KEY=VALUE", path, n)
		}
		key = strings.TrimPrefix(key, "export ")
		switch {
		case key == "":
			return fmt.Errorf("--envfile %s: line %d: no key", path, n)
		case strings.Contains(key, " "):
			return fmt.Errorf("--envfile %s: line %d: the key %q holds a space", path, n, key)
		case strings.HasPrefix(val, " ") || strings.HasPrefix(val, "\t"):
			return fmt.Errorf("--envfile %s: line %d: white space before the value", path, n)
		}
		if before, _, found := strings.Cut(val, "#"); found {
			val = strings.TrimRight(before, " \t")
		}
		if strings.HasPrefix(val, `"`) || strings.HasPrefix(val, "'") {
			quote := val[:1]
			for !strings.HasSuffix(line, quote) || strings.HasSuffix(line, `\`+quote) {
				val = strings.ReplaceAll(val, `\`+quote, quote)
				if !sc.Scan() {
					break
				}
				n++
				line = strings.ReplaceAll(sc.Text(), `\`+quote, quote)
				val += "\n" + line
			}
			val = strings.TrimSuffix(strings.TrimPrefix(val, quote), quote)
		}
		vars[key] = val
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--envfile %s: %v", path, err)
	}
	for k, v := range vars {
		if _, set := os.LookupEnv(k); !set {
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("--envfile %s: %v", path, err)
			}
		}
	}
	return nil
}
