package ipclass

import "strings"

// staticExtensions are the file extensions of what a page pulls in by itself (images, fonts,
// styles, scripts, source maps, icons, audio and video, web manifests): a missing one is a
// broken page, not a scan. A reader opening an old gallery meets dozens at once; scanners look
// for scripts, archives, configuration and admin pages, none of which is here.
var staticExtensions = map[string]struct{}{}

func init() {
	for _, ext := range strings.Fields(`
		jpg jpeg png gif webp avif svg ico bmp tif tiff apng heic heif jxl cur
		woff woff2 ttf otf eot
		css js mjs map
		mp4 webm ogv m4v mov mp3 m4a oga ogg opus wav flac aac vtt
		webmanifest`) {
		staticExtensions[ext] = struct{}{}
	}
}

// maxExtension is the longest extension in staticExtensions: a longer one is none of them.
const maxExtension = len("webmanifest")

// StaticResource reports whether the request path names a static resource by the extension of
// its last segment (ASCII case ignored: /IMG_1.JPG): a 404 for it is no not_found signal, as
// CrowdSec's http-probing leaves static resources out.
func StaticResource(path string) bool {
	dot := strings.LastIndexByte(path, '.')
	if dot < 0 || strings.IndexByte(path[dot:], '/') >= 0 {
		return false
	}
	ext := path[dot+1:]
	if ext == "" || len(ext) > maxExtension {
		return false
	}
	var buf [maxExtension]byte
	for i := 0; i < len(ext); i++ {
		c := ext[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	_, ok := staticExtensions[string(buf[:len(ext)])]
	return ok
}
