package caddymodule

import (
	"encoding/json"
	"fmt"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/swarmsec/caddy-hardening/apikey"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "hardening",
		Usage: "<command>",
		Short: "caddy-hardening tools: API keys, configuration check, header grade",
		Long: `
Tools for caddy-hardening.

  caddy hardening keygen    generate API keys and the digests to configure
  caddy hardening check     lint a configuration (--config) or grade a live site (--url)`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(keygenCommand(), checkCommand())
		},
	})
}

// maxKeygenCount bounds one run's output.
const maxKeygenCount = 1000

func keygenCommand() *cobra.Command {
	var (
		prefix  string
		count   int
		asJSON  bool
		example = "  caddy hardening keygen --prefix hk_ --count 2\n  caddy hardening keygen --json"
	)
	cmd := &cobra.Command{
		Use:   "keygen [--prefix <prefix>] [--count <n>] [--json]",
		Short: "Generate 256-bit API keys and their sha256 digests",
		Long: `Generates API keys: the prefix, then 256 bits from crypto/rand in unpadded base64url.

Each key is printed with the digest "sha256:<hex>" of the key string as printed. Give the key to
the client; put only the digest in the configuration (e.g. monitoring's api_keys), so the
configuration never holds a usable key. Keys are not stored anywhere: keep the output.

Text output is one line per key: the key, a space, the digest. --json prints an array of
{"key": ..., "digest": ...} objects.`,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 1 || count > maxKeygenCount {
				return fmt.Errorf("--count must be between 1 and %d, got %d", maxKeygenCount, count)
			}
			type keyOut struct {
				Key    string `json:"key"`
				Digest string `json:"digest"`
			}
			keys := make([]keyOut, 0, count)
			for i := 0; i < count; i++ {
				k, err := apikey.Generate(prefix)
				if err != nil {
					return err
				}
				keys = append(keys, keyOut{Key: k, Digest: apikey.Digest(k)})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(keys)
			}
			for _, k := range keys {
				if _, err := fmt.Fprintf(out, "%s %s\n", k.Key, k.Digest); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "text before the random part, e.g. hk_ (letters, digits, _ and -, up to 32)")
	cmd.Flags().IntVar(&count, "count", 1, "number of keys")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {key, digest}")
	return cmd
}
