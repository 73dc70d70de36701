package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestCheckWritesNoStorage: the lint provisions the configuration, and with `local_certs` (or
// `tls internal`) provisioning creates the local CA; it must do so in a throwaway storage, so
// that a check in a Dockerfile bakes no CA key into the image (F2). After a check, the XDG data
// folder, an explicit `storage file_system` folder and a PKI authority's own storage hold no
// file, and the throwaway folder (under TMPDIR) is gone.
func TestCheckWritesNoStorage(t *testing.T) {
	bin := testenv.CaddyBinary(t)
	storage, caStorage := t.TempDir(), t.TempDir()
	for _, tc := range []struct{ name, file, config string }{
		{"Caddyfile.example (local_certs)", "Caddyfile", readExample(t)},
		{"storage file_system", "Caddyfile", "{\n\tadmin off\n\tlocal_certs\n\tstorage file_system " + storage + "\n}\nlocalhost:9 {\n\tbind 127.0.0.1\n\tsecurity_headers\n}\n"},
		{"a PKI authority's storage", "caddy.json", `{"admin": {"disabled": true}, "apps": {"pki": {"certificate_authorities": {"local": {"storage": {"module": "file_system", "root": "` + caStorage + `"}}}}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp, file := t.TempDir(), filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(file, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			p := testenv.StartProcess(t, bin, []string{"hardening", "check", "--config", file}, "", "TMPDIR="+tmp)
			if err := p.Wait(60 * time.Second); err != nil {
				t.Fatalf("check: %v\n%s", err, p.Output())
			}
			// p.Dir is HOME, and holds XDG_DATA_HOME and XDG_CONFIG_HOME.
			for _, dir := range []string{p.Dir, storage, caStorage, tmp} {
				_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						t.Errorf("the check wrote %s", path)
					}
					return nil
				})
			}
		})
	}
}
