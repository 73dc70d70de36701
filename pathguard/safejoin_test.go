package pathguard

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSafeJoin(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct{ in, want string }{
		{"/index.html", "index.html"},
		{"/a/b/../c.txt", "a/c.txt"}, // a .. inside a segment list: refused below
		{"/", "."},
		{"/a..b.txt", "a..b.txt"},
	} {
		got, err := SafeJoin(root, tc.in)
		if tc.in == "/a/b/../c.txt" {
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("SafeJoin(%q) = %q, %v; want ErrUnsafePath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("SafeJoin(%q) = %q, %v; want %q", tc.in, got, err, filepath.Join(root, tc.want))
		}
	}
	for _, bad := range []string{"/../x", "..", "/a\\..\\x", "/x\x00", "/C:/x", "/\uff0e\uff0e/x"} {
		if got, err := SafeJoin(root, bad); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("SafeJoin(%q) = %q, %v; want ErrUnsafePath", bad, got, err)
		}
	}
}

func TestOpenInRootRefusesSymlinkOut(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "ok.txt"), []byte("ok"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(root, "link.txt")); err != nil {
		t.Fatal(err)
	}
	f, err := OpenInRoot(root, "/ok.txt")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if f, err := OpenInRoot(root, "/link.txt"); err == nil {
		f.Close()
		t.Fatal("a symbolic link out of the root was followed")
	}
}
