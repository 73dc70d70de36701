package pathguard

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// ErrUnsafePath is returned when a URL path cannot be mapped inside the root.
var ErrUnsafePath = errors.New("path escapes the root or is ambiguous")

// SafeJoin maps a decoded URL path to a file name under root, for code that serves files: it
// refuses (with ErrUnsafePath) what Check refuses and anything that would resolve outside
// root, and returns a cleaned name inside it. It does not follow symbolic links: to open the
// result without a link inside root leading out, use OpenInRoot. It applies the Windows rules
// (Options.Windows) when the program runs on Windows; for a root on a Windows file system
// reached from elsewhere (an SMB share, an NTFS volume), use Options.SafeJoin with Windows set.
func SafeJoin(root, urlPath string) (string, error) {
	return fileOptions().SafeJoin(root, urlPath)
}

// OpenInRoot opens the file a decoded URL path names under root, refusing traversal as SafeJoin
// does and, through os.OpenInRoot, any symbolic link that leads out of root.
func OpenInRoot(root, urlPath string) (*os.File, error) {
	return fileOptions().OpenInRoot(root, urlPath)
}

// fileOptions are the options of SafeJoin and OpenInRoot: the Windows rules where the files are
// on Windows.
func fileOptions() Options { return Options{Windows: runtime.GOOS == "windows"} }

// SafeJoin is the package's SafeJoin with o's rules for a file name: Windows also refuses the
// names a Windows file system reads as another file or a device (`admin.`, `web.config `, `con`,
// `nul.txt`, `PROGRA~1`), for a root served from Windows or on a share a Windows server
// serves; AllowInvalidUTF8 accepts names that are not UTF-8 (Latin-1 names on a legacy disk;
// overlong forms such as \xc0\xae stay refused). A `;` is always accepted (in a decoded path it
// is part of a name; `..;` stays refused), and the encoded-slash options do not apply to a
// decoded path.
func (o Options) SafeJoin(root, urlPath string) (string, error) {
	o.AllowPathParams, o.attackOnly = true, false
	if r := checkBytes(urlPath, o); r != "" {
		return "", fmt.Errorf("%w: %s", ErrUnsafePath, r)
	}
	if r := checkSegments(urlPath); r != "" {
		return "", fmt.Errorf("%w: %s", ErrUnsafePath, r)
	}
	if o.Windows {
		if r := checkWindows(urlPath, o); r != "" {
			return "", fmt.Errorf("%w: %s", ErrUnsafePath, r)
		}
	}
	rel := path.Clean("/" + urlPath)[1:] // rooted clean: no leading .. can survive
	if rel == "" {
		rel = "."
	}
	name := filepath.Join(root, filepath.FromSlash(rel))
	within, err := filepath.Rel(root, name)
	if err != nil || within == ".." || strings.HasPrefix(within, ".."+string(filepath.Separator)) || filepath.IsAbs(within) {
		return "", ErrUnsafePath
	}
	return name, nil
}

// OpenInRoot is the package's OpenInRoot with o's rules (see Options.SafeJoin).
func (o Options) OpenInRoot(root, urlPath string) (*os.File, error) {
	name, err := o.SafeJoin(root, urlPath)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(root, name)
	if err != nil {
		return nil, ErrUnsafePath
	}
	return os.OpenInRoot(root, rel)
}
