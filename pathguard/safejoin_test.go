package pathguard

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
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

// TestSafeJoinOptions: Options.SafeJoin and Options.OpenInRoot apply the Windows rules when
// asked (a root on an NTFS volume or a share a Windows server serves, reached from Linux), and
// accept names that are not UTF-8 with AllowInvalidUTF8; the package's functions take the
// Windows rules from the system they run on.
func TestSafeJoinOptions(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "admin"), []byte("admin"), 0o600); err != nil {
		t.Fatal(err)
	}
	win := Options{Windows: true}
	for _, p := range []string{"/admin.", "/admin ", "/admin. .", "/web.config ", "/con", "/docs/nul.txt", "/COM1:", "/PROGRA~1/x", "/WEB~1.CON", "/con;x"} {
		if got, err := win.SafeJoin(root, p); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Windows SafeJoin(%q) = %q, %v; want ErrUnsafePath", p, got, err)
		}
		if f, err := win.OpenInRoot(root, p); !errors.Is(err, ErrUnsafePath) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Windows OpenInRoot(%q): %v; want ErrUnsafePath", p, err)
		}
		if _, err := (Options{}).SafeJoin(root, p); err != nil {
			t.Errorf("SafeJoin(%q) without Windows: %v; want a name", p, err)
		}
	}
	for _, p := range []string{"/admin", "/...", "/~user/a~b", "/console", "/a;b", "/caf\u00e9"} {
		if _, err := win.SafeJoin(root, p); err != nil {
			t.Errorf("Windows SafeJoin(%q): %v; want a name", p, err)
		}
	}
	if f, err := win.OpenInRoot(root, "/admin"); err != nil {
		t.Errorf("Windows OpenInRoot(/admin): %v", err)
	} else {
		f.Close()
	}
	// Names that are not UTF-8: refused unless allowed; overlong forms and traversal regardless.
	latin := Options{AllowInvalidUTF8: true}
	if _, err := (Options{}).SafeJoin(root, "/caf\xe9"); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("SafeJoin(caf\\xe9): %v; want ErrUnsafePath", err)
	}
	if got, err := latin.SafeJoin(root, "/caf\xe9"); err != nil || got != filepath.Join(root, "caf\xe9") {
		t.Errorf("SafeJoin(caf\\xe9) with AllowInvalidUTF8 = %q, %v", got, err)
	}
	for _, p := range []string{"/\xc0\xae\xc0\xae/x", "/caf\xe9/../../x", "/\uff0e\uff0e/x", "/\u3002\u3002/x"} {
		if got, err := latin.SafeJoin(root, p); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("SafeJoin(%q) with AllowInvalidUTF8 = %q, %v; want ErrUnsafePath", p, got, err)
		}
	}
	// The package's functions: the Windows rules where the program runs on Windows.
	_, err := SafeJoin(root, "/admin.")
	if onWindows := runtime.GOOS == "windows"; errors.Is(err, ErrUnsafePath) != onWindows {
		t.Errorf("SafeJoin(/admin.) on %s: %v", runtime.GOOS, err)
	}
}
