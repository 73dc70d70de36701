package pathguard

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrUnsafePath is returned when a URL path cannot be mapped inside the root.
var ErrUnsafePath = errors.New("path escapes the root or is ambiguous")

// SafeJoin maps a decoded URL path to a file name under root, for code that serves files: it
// refuses (with ErrUnsafePath) what Check refuses and anything that would resolve outside
// root, and returns a cleaned name inside it. It does not follow symbolic links: to open the
// result without a link inside root leading out, use OpenInRoot.
func SafeJoin(root, urlPath string) (string, error) {
	if r := checkBytes(urlPath, Options{AllowPathParams: true}); r != "" {
		return "", fmt.Errorf("%w: %s", ErrUnsafePath, r)
	}
	if r := checkSegments(urlPath); r != "" {
		return "", fmt.Errorf("%w: %s", ErrUnsafePath, r)
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

// OpenInRoot opens the file a decoded URL path names under root, refusing traversal as SafeJoin
// does and, through os.OpenInRoot, any symbolic link that leads out of root.
func OpenInRoot(root, urlPath string) (*os.File, error) {
	name, err := SafeJoin(root, urlPath)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(root, name)
	if err != nil {
		return nil, ErrUnsafePath
	}
	return os.OpenInRoot(root, rel)
}
