// Package pathguard decides whether a request path is safe to hand to code that maps URLs to
// files or forwards them upstream: it refuses traversal in every encoding attackers use
// (plain, percent-encoded in any case, double-encoded, overlong UTF-8, IIS %u escapes,
// Unicode look-alikes of dots and separators that normalize to a `..` segment (by NFKC, or by
// UTS#46 for the ideographic full stop 。), the yen and won
// signs Windows reads as `\` in Japanese and Korean code pages), backslashes,
// NUL and control bytes, Windows drive paths (a `C:` segment followed by a separator), a `..`
// padded with spaces (`..%20`, which servers that trim segments read as `..`), NTFS stream
// suffixes (`index.asp::$DATA`), and,
// unless allowed, encoded slashes, `;` path parameters and other bytes that are not UTF-8
// (sent raw or encoded: a proxy sends raw bytes on encoded, so both reach the next server
// alike). It refuses nothing an ordinary URL contains: dots inside names (a..b.txt, v1.2..3),
// Unicode names, also with a look-alike slash between words (AC／DC, a∕b), a title that ends
// in a letter and a colon (/wiki/A:), and anything in the query.
// It imports nothing from Caddy (golang.org/x/text's NFKC, which Caddy also uses, for drive
// letters and colons written as look-alikes).
package pathguard

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Reason says why a path was refused. The empty Reason means the path is safe.
type Reason string

// The reasons, also the `reason` label of the metrics and the field of path_blocked events.
const (
	ReasonDotSegment     Reason = "dot_segment"     // a `..` segment, in any encoding
	ReasonBackslash      Reason = "backslash"       // `\` or %5c: a separator on Windows and some upstreams
	ReasonNUL            Reason = "nul_byte"        // %00: truncates paths in C-based code
	ReasonControl        Reason = "control_char"    // other bytes below 0x20 and 0x7f (CRLF injection)
	ReasonDoubleEncoding Reason = "double_encoding" // %25xx that decodes again to a dot, separator, NUL or control byte
	ReasonOverlongUTF8   Reason = "overlong_utf8"   // %c0%ae and kin: invalid UTF-8 that lax decoders read as / . \
	ReasonInvalidUTF8    Reason = "invalid_utf8"    // other bytes that are not UTF-8: %80, Latin-1 %e9, a cut sequence
	ReasonUnicodeEscape  Reason = "unicode_escape"  // %u002e: IIS's non-standard escape
	ReasonLookalike      Reason = "unicode_lookalike"
	ReasonEncodedSlash   Reason = "encoded_slash" // %2f inside a segment (unless allowed)
	ReasonPathParams     Reason = "path_params"   // `;` parameters, as in Tomcat's /..;/ (unless allowed)
	ReasonDrivePath      Reason = "drive_path"    // a C: segment followed by a separator (/C:/windows)
	ReasonBadEncoding    Reason = "bad_encoding"  // a % not followed by two hex digits
	ReasonNTFSStream     Reason = "ntfs_stream"   // an NTFS stream suffix: index.asp::$DATA

	// Only with Options.Windows: names Windows reads as another file or as a device.
	ReasonTrailingDotSpace Reason = "trailing_dot_space" // a segment ending in a dot or space: admin./, web.config%20
	ReasonDOSDevice        Reason = "dos_device"         // a DOS device name as a segment: con, nul, com1, aux.txt
	ReasonShortName        Reason = "short_name"         // an 8.3 short name: PROGRA~1, WEB~1.CON, IIS's *~1* scans
)

// Reasons lists every reason, for metrics.
var Reasons = []Reason{ReasonDotSegment, ReasonBackslash, ReasonNUL, ReasonControl, ReasonDoubleEncoding,
	ReasonOverlongUTF8, ReasonInvalidUTF8, ReasonUnicodeEscape, ReasonLookalike, ReasonEncodedSlash, ReasonPathParams,
	ReasonDrivePath, ReasonBadEncoding, ReasonNTFSStream, ReasonTrailingDotSpace, ReasonDOSDevice, ReasonShortName}

// Malformed reports whether r refuses a path that is malformed rather than an attack form:
// bytes that are not UTF-8 but not overlong (Latin-1 links), `;` parameters (;jsessionid=), an
// encoded slash, a % that starts no escape, a segment ending in a dot or space (a link copied
// with the full stop of its sentence). Legacy links and sloppy clients send these, so
// they weigh less as evidence against a client. Check names such a reason only when the path
// holds no attack form besides (a `/..;/` is dot_segment, not path_params).
func (r Reason) Malformed() bool {
	switch r {
	case ReasonInvalidUTF8, ReasonPathParams, ReasonEncodedSlash, ReasonBadEncoding, ReasonTrailingDotSpace:
		return true
	}
	return false
}

// Options loosen the check for applications that need it.
type Options struct {
	// AllowEncodedSlash accepts %2f inside a segment (APIs that take IDs with slashes). An
	// encoded slash next to a separator or to another encoded slash (`/a/%2F/etc/passwd`,
	// `/%2Fetc`, `a%2F%2Fb`, `group%2F/x`) stays refused: once decoded, it makes an empty
	// segment, the `//` a path-joining upstream reads as an absolute path and a redirecting one
	// as another host, in a form no slash-merging proxy merges.
	AllowEncodedSlash bool
	// AllowEncodedEmptySegment, with AllowEncodedSlash, also accepts those: for an application
	// that gets the literal empty segments as sent too (path_guard's merge_slashes off).
	AllowEncodedEmptySegment bool
	// AllowPathParams accepts `;` in paths (matrix parameters); `..;` is refused regardless.
	AllowPathParams bool
	// AllowInvalidUTF8 accepts bytes that are not UTF-8 (legacy Latin-1 links: /caf%e9);
	// overlong UTF-8 (%c0%ae) is refused regardless.
	AllowInvalidUTF8 bool

	// Windows also refuses what a Windows file system reads as another name than the one
	// written (checkWindows): a segment ending in a dot or a space (`/admin./`, `/web.config%20`,
	// the same file as `admin`, `web.config`, past a rule written for that name), a DOS device
	// name (`con`, `nul`, `com1`, `aux.txt`) and an 8.3 short name (`PROGRA~1`, `WEB~1.CON`,
	// IIS's tilde enumeration). For an application served from Windows (IIS, Kestrel, Tomcat or
	// a file server there); elsewhere these are ordinary names.
	Windows bool

	// attackOnly skips every Malformed reason (and reads a bad % literally): the second look
	// Check takes at a malformed path for an attack form behind the first flaw.
	attackOnly bool
}

// maxDecodeRounds bounds how many layers of percent-encoding are peeled off and checked: a
// round costs a pass over the path, and a chain such as %2525...2541 peels one escape per
// round. Escapes still left after the last round are not examined.
const maxDecodeRounds = 4

// Check examines a path as the client sent it (escaped, without the query) and returns why it
// must be refused, or "" when it is safe. Bytes above 0x7f count the same raw or
// percent-encoded (Go's URL escaping turns a raw \xc0 into the %C0 an upstream receives); in
// either form they must be UTF-8. Ordinary paths cost one pass and no allocation. A Malformed
// reason is given only when the path holds no attack form: a malformed byte in front of a
// `..` does not make the traversal count as a mere malformed path.
func Check(raw string, opt Options) Reason {
	r := check(raw, opt)
	if r.Malformed() {
		if attack := check(raw, Options{Windows: opt.Windows, attackOnly: true}); attack != "" {
			return attack
		}
	}
	return r
}

func check(raw string, opt Options) Reason {
	if opt.attackOnly {
		opt.AllowEncodedSlash, opt.AllowEncodedEmptySegment, opt.AllowPathParams, opt.AllowInvalidUTF8 = true, true, true, true
	}
	var pct, dot, colon, semi, high bool
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == 0:
			return ReasonNUL
		case c < 0x20 || c == 0x7f:
			return ReasonControl
		case c == '\\':
			return ReasonBackslash
		case c == '%':
			pct = true
		case c == '.':
			dot = true
		case c == ':':
			colon = true
		case c == ';':
			semi = true
		case c >= 0x80:
			high = true
		}
	}
	if !pct && !dot && !colon && !semi && !high && !opt.Windows {
		return ""
	}
	if semi && !opt.AllowPathParams {
		return ReasonPathParams
	}
	if r := checkSegments(raw); r != "" {
		return r
	}
	if opt.Windows {
		if r := checkWindows(raw, opt); r != "" {
			return r
		}
	}
	if high {
		if r := checkUTF8(raw, opt); r != "" {
			return r
		}
	}
	if !pct {
		return ""
	}
	return checkDecoded(raw, opt)
}

// checkDecoded peels percent-encoding layer by layer and checks each result as the first. A
// deeper layer that decodes to a dot, slash, backslash, NUL or control byte is double_encoding; one
// that decodes to UTF-8 text (a double-encoded é, as some proxies send it) is judged like that
// text sent once: it passes unless it is invalid, overlong or a look-alike.
func checkDecoded(raw string, opt Options) Reason {
	cur := raw
	for round := 1; round <= maxDecodeRounds && strings.IndexByte(cur, '%') >= 0; round++ {
		dec, d, r := decode(cur, round == 1 && !opt.attackOnly)
		if r != "" {
			return r
		}
		if dec == cur { // only literal % left (a name such as "100%" sent as 100%25)
			return ""
		}
		if round > 1 && d.special {
			return ReasonDoubleEncoding
		}
		if d.slash && (!opt.AllowEncodedSlash || !opt.AllowEncodedEmptySegment && emptySegmentEncoded(cur)) {
			return ReasonEncodedSlash
		}
		if r := checkBytes(dec, opt); r != "" {
			return r
		}
		if r := checkSegments(dec); r != "" {
			return r
		}
		if opt.Windows {
			if r := checkWindows(dec, opt); r != "" {
				return r
			}
		}
		cur = dec
	}
	return ""
}

// emptySegmentEncoded reports whether an encoded slash of p (%2f, in any case) stands next to a
// literal `/` or another encoded slash: decoded, p then holds an empty segment (`//`) that
// merging p's literal runs of slashes would not remove.
func emptySegmentEncoded(p string) bool {
	prev := byte(0) // 'l' after a literal slash, 'e' after an encoded one, 0 after anything else
	for i := 0; i < len(p); i++ {
		cur := byte(0)
		switch {
		case p[i] == '/':
			cur = 'l'
		case p[i] == '%' && i+2 < len(p) && p[i+1] == '2' && (p[i+2] == 'f' || p[i+2] == 'F'):
			cur = 'e'
			i += 2
		}
		if cur != 0 && prev != 0 && (cur == 'e' || prev == 'e') {
			return true
		}
		prev = cur
	}
	return false
}

// checkBytes looks at a decoded path for bytes that have no business in a path.
func checkBytes(p string, opt Options) Reason {
	high := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == 0:
			return ReasonNUL
		case c < 0x20 || c == 0x7f:
			return ReasonControl
		case c == '\\':
			return ReasonBackslash
		case c == ';' && !opt.AllowPathParams:
			return ReasonPathParams
		case c >= utf8.RuneSelf:
			high = true
		}
	}
	if high {
		return checkUTF8(p, opt)
	}
	return ""
}

// checkUTF8 refuses bytes that are not UTF-8. The overlong forms that lax decoders read as
// `.`, `/` or `\` are overlong_utf8: 0xc0 or 0xc1 followed by a continuation byte (%c0%ae),
// 0xe0 or 0xf0 followed by a byte too small for their length (%e0%80%ae, %f0%80%80%ae), and
// the old 5- and 6-byte forms, 0xf8 to 0xfd followed by a continuation byte. Anything else
// invalid (a lone continuation byte, a cut sequence, a UTF-16 surrogate, a code point above
// U+10FFFF, Latin-1 text such as %fc for ü, %e0 for à or %c0 for À before a letter) is invalid_utf8: no
// decoder makes a separator of it, but it is not a path any browser sends, and the server
// behind may read it in a charset of its own.
func checkUTF8(p string, opt Options) Reason {
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		continued := i+1 < len(p) && p[i+1]&0xc0 == 0x80
		switch {
		case (c == 0xc0 || c == 0xc1 || c >= 0xf8 && c <= 0xfd) && continued:
			return ReasonOverlongUTF8
		case c == 0xe0 && continued && p[i+1] < 0xa0:
			return ReasonOverlongUTF8
		case c == 0xf0 && continued && p[i+1] < 0x90:
			return ReasonOverlongUTF8
		}
		r, n := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError && n == 1 && !opt.AllowInvalidUTF8 {
			return ReasonInvalidUTF8
		}
		i += n
	}
	return ""
}

// decoded tells what a decoding layer produced from escapes.
type decoded struct {
	slash bool // a %2f
	// special: a byte that makes a path resolve elsewhere: . / \, NUL, control. A `;` or `:`
	// is left to the layer's own check (path_params; a `..;` or a drive root with a separator),
	// so a wiki title whose colon a proxy escaped twice (Special%253ASearch) is not an attack.
	special bool
}

// decode percent-decodes p once. It refuses IIS %u escapes and, on the first layer, a % that
// starts no valid escape.
func decode(p string, strict bool) (string, decoded, Reason) {
	var b strings.Builder
	b.Grow(len(p))
	var d decoded
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(p) && (p[i+1] == 'u' || p[i+1] == 'U') && i+5 < len(p) && allHex(p[i+2:i+6]) {
			return "", d, ReasonUnicodeEscape
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			if strict {
				return "", d, ReasonBadEncoding
			}
			b.WriteByte(c) // a literal % in an already decoded layer
			continue
		}
		v := unhex(p[i+1])<<4 | unhex(p[i+2])
		d.slash = d.slash || v == '/'
		d.special = d.special || strings.IndexByte("./\\", v) >= 0 || v < 0x20 || v == 0x7f
		b.WriteByte(v)
		i += 2
	}
	return b.String(), d, ""
}

// checkSegments refuses `..` segments (also before `;` parameters, and before a decoded `?`
// or `#`), drive segments followed by
// a separator (`/C:/windows/win.ini`, `/static/C:/x`, `/C:/`: the root of a drive, where a
// Windows server that joins the path to its root lands), and non-ASCII segments that normalize
// to either (checkUnicodeSegment). A drive segment at the end (`/wiki/A:`, `/docs/C:`) passes:
// with no separator after it, it names no drive's root, and it is a title as often as
// `C:_The_Contra_Adventure` is.
func checkSegments(p string) Reason {
	for rest := p; ; {
		seg, after, more := strings.Cut(rest, "/")
		name := seg
		// A `;` starts parameters (Tomcat reads `..;` as `..`); a decoded `?` or `#` (from
		// %3f, %23) is where a server that decodes the path and parses it again as a URL
		// cuts it: `..%3f/` is `..` there.
		if i := strings.IndexAny(name, ";?#"); i >= 0 {
			name = name[:i]
		}
		switch {
		case name == ".." || paddedDotDot(name):
			return ReasonDotSegment
		case ntfsStream(seg):
			// The whole segment: a file system reads `#` and `;` as name characters, so a
			// raw `/#:$DATA`, forwarded as `/%23:$DATA`, is the stream of a file `#` on
			// Windows.
			return ReasonNTFSStream
		case more && len(name) == 2 && name[1] == ':' && isLetter(name[0]):
			return ReasonDrivePath
		}
		if !isASCII(seg) {
			if r := checkUnicodeSegment(seg, more); r != "" {
				return r
			}
		}
		if !more {
			return ""
		}
		rest = after
	}
}

// paddedDotDot reports whether a segment is `..` padded with white space, and maybe more
// dots after it (`.. `, ` ..`, `.. .`, `... `): a server that trims a segment's spaces (Java's
// String.trim, Python's str.strip, Go's strings.TrimSpace, the last two also U+00A0, U+3000
// and the other Unicode spaces) or its trailing dots and spaces, as Windows does, reads a `..`
// there. A name of dots alone (`...`, `....`) passes: Windows keeps three or more dots as a
// name, and so does every server that resolves only `.` and `..`.
func paddedDotDot(s string) bool {
	if !strings.Contains(s, "..") {
		return false
	}
	t := strings.TrimFunc(s, unicode.IsSpace)
	padded := t != s || strings.IndexFunc(t, unicode.IsSpace) >= 0
	return padded && strings.HasPrefix(t, "..") && strings.TrimFunc(t, dotOrSpace) == ""
}

func dotOrSpace(r rune) bool { return r == '.' || unicode.IsSpace(r) }

// ntfsTypes are the NTFS attribute types a stream suffix names (file:stream:$TYPE); `::$DATA`
// is a file's content, `::$INDEX_ALLOCATION` a directory's.
var ntfsTypes = []string{"DATA", "INDEX_ALLOCATION", "BITMAP", "ATTRIBUTE_LIST", "EA",
	"EA_INFORMATION", "FILE_NAME", "LOGGED_UTILITY_STREAM", "OBJECT_ID", "REPARSE_POINT",
	"SECURITY_DESCRIPTOR", "STANDARD_INFORMATION", "VOLUME_INFORMATION", "VOLUME_NAME"}

// ntfsStream reports whether a segment names an NTFS stream by its type, in any case:
// `index.asp::$DATA` is the file on Windows, so a server that picks its handler by the
// extension serves the script's source (IIS, Tomcat's CVE-2017-12615 for a PUT), and
// `admin::$INDEX_ALLOCATION` is the directory `admin`, past a rule on that name. A colon
// followed by a dollar and anything else (`/wiki/Price:$5`, `X:$Database`) passes.
func ntfsStream(s string) bool {
	for {
		i := strings.Index(s, ":$")
		if i < 0 {
			return false
		}
		s = s[i+2:]
		n := 0
		for n < len(s) && (isLetter(s[n]) || s[n] == '_') {
			n++
		}
		for _, t := range ntfsTypes {
			if strings.EqualFold(s[:n], t) {
				return true
			}
		}
	}
}

// checkWindows refuses, in a path or one of its decoded layers, the segments (without `;`
// parameters) that Windows reads as something else than the name written, as nginx's Windows
// build (ngx_win32_check_filename: trailing dots and spaces, short names) and ASP.NET
// (relaxedUrlToFileSystemMapping false, its default: trailing dots and spaces, device names)
// refuse them:
//   - trailing_dot_space: a name ending in a dot or a space. Windows drops them, so
//     `/admin./x`, `/admin%20/x`, `/web.config.` and `/web.config%20` are `admin` and
//     `web.config`, past any rule (a path matcher, IIS's hiddenSegments) written for those
//     names. A name of dots alone (`...`) passes: Windows keeps it. Skipped on the second look
//     for an attack form (it is Malformed: a link pasted with its sentence's full stop).
//   - dos_device: a device name, alone or before an extension or a colon, in any case (`con`,
//     `NUL.txt`, `aux.tar.gz`, `com1:`, `lpt¹`, `conin$`): opening it reads the console or a
//     port, not a file (Windows 9x crashed on /con/con; ASP.NET answers 404 for /com1 routes).
//   - short_name: an 8.3 alias, up to six characters, `~`, digits, up to eight in all, and an
//     extension of up to three (`PROGRA~1`, `WEB~1.CON`), also with the `*` of IIS's tilde
//     enumeration (`/a*~1*/.aspx`): the long name's file, past a rule written for that name.
//     `/~user/`, `/a~b` and `v1.0~rc1` pass.
func checkWindows(p string, opt Options) Reason {
	for rest := p; ; {
		seg, after, more := strings.Cut(rest, "/")
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		switch {
		case dosDevice(seg):
			return ReasonDOSDevice
		case shortName(seg):
			return ReasonShortName
		case !opt.attackOnly && trailingDotSpace(seg):
			return ReasonTrailingDotSpace
		}
		if !more {
			return ""
		}
		rest = after
	}
}

// trailingDotSpace reports whether a segment ends in a dot or a space that Windows drops: ASCII,
// or a look-alike that NFKC (lax servers) and Windows' best-fit conversion to a legacy code page
// (an application handing the path to an ANSI file API, the "WorstFit" attacks) make one, so
// `web.config．` (U+FF0E) and `admin　` (U+3000) are `web.config` and `admin` there. A name of
// dots alone (`...`) passes: Windows keeps it. A Japanese name ending in 。 (U+3002) passes
// too: neither makes it a '.'. TestWindowsDotSpaceMatchesNFKC checks the runes.
func trailingDotSpace(seg string) bool {
	r, _ := utf8.DecodeLastRuneInString(seg)
	return (r == '.' || r == ' ' || windowsDotSpace(r)) && strings.TrimFunc(seg, func(r rune) bool { return r == '.' || r == '\uff0e' || r == '\ufe52' || r == '\u2024' }) != ""
}

// windowsDotSpace reports whether r is a non-ASCII rune that NFKC makes a '.' or a ' '.
func windowsDotSpace(r rune) bool {
	switch r {
	case '\uff0e', '\ufe52', '\u2024', // fullwidth full stop, small full stop, one-dot leader
		'\u00a0', '\u202f', '\u205f', '\u3000': // no-break, narrow no-break, math and ideographic spaces
		return true
	}
	return r >= '\u2000' && r <= '\u200a' // en quad ... hair space
}

// dosDevices are the names Windows opens as devices whatever the directory, the last digit
// also as a superscript ¹ ² ³ (which Windows reads as 1, 2, 3 there).
var dosDevices = []string{"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}

// dosDevice reports whether a segment names a DOS device: a device name, in any case, alone or
// followed by an extension (`con.txt`, `nul.tar.gz`), a colon (`com1:`) or spaces.
func dosDevice(seg string) bool {
	if i := strings.IndexAny(seg, ".:"); i >= 0 {
		seg = seg[:i]
	}
	seg = strings.TrimRight(seg, " ")
	if len(seg) < 3 || len(seg) > 7 {
		return false
	}
	for _, d := range dosDevices {
		if strings.EqualFold(seg, d) {
			return true
		}
	}
	if len(seg) < 4 || !strings.EqualFold(seg[:3], "COM") && !strings.EqualFold(seg[:3], "LPT") {
		return false
	}
	switch n := seg[3:]; n {
	case "\u00b9", "\u00b2", "\u00b3":
		return true
	default:
		return len(n) == 1 && '0' <= n[0] && n[0] <= '9'
	}
}

// shortName reports whether a segment has the shape of an 8.3 short name: one to six
// characters without a dot or space, `~`, digits (eight characters in all at most), then the
// end, an extension of up to three characters, or the `*` of a wildcard scan. A scan's `*`
// before the `~` (`a*~1*`, `0*~000000`) may stand for one character or none: it counts as none,
// so a base of six and a `*` is one.
func shortName(seg string) bool {
	i := strings.IndexByte(seg, '~')
	if i < 1 || strings.ContainsAny(seg[:i], ". ") {
		return false
	}
	n := max(i-strings.Count(seg[:i], "*"), 1) // the base's length as the scan matches it at least
	if n > 6 {
		return false
	}
	j := i + 1
	for j < len(seg) && '0' <= seg[j] && seg[j] <= '9' {
		j++
	}
	if j == i+1 || n+j-i > 8 {
		return false
	}
	switch rest := seg[j:]; {
	case rest == "" || rest[0] == '*':
		return true
	case rest[0] == '.':
		return len(rest) <= 4 && !strings.Contains(rest[1:], ".")
	}
	return false
}

// dots is how many full stops a server that normalizes r makes of it: NFKC normalization (which
// lax servers and file systems apply) and UTS#46's mapping (IDNA, applied by URL libraries
// and .NET's IdnMapping, also to text that is not a host name), which makes the ideographic
// full stops 。 U+3002 and ｡ U+FF61 (and ︒ U+FE12, which NFKC makes 。) a '.', although NFKC
// keeps 。 as it is. 1 for '.' and its look-alikes, 2 for the two-dot leaders, 3 for the
// ellipses, 0 for any other rune. TestDotsMatchesNFKC checks the table against every Unicode
// rune.
func dots(r rune) int {
	switch r {
	case '.', '\uff0e', '\u2024', '\ufe52': // fullwidth full stop, one-dot leader, small full stop
		return 1
	case '\u3002', '\uff61', '\ufe12': // ideographic full stop, its halfwidth and vertical forms (UTS#46)
		return 1
	case '\u2025', '\ufe30': // two-dot leader, vertical two-dot leader
		return 2
	case '\u2026', '\ufe19': // horizontal ellipsis, vertical horizontal ellipsis
		return 3
	}
	return 0
}

// slashLike are runes that NFKC normalization (／ U+FF0F, ＼ U+FF3C, ﹨ U+FE68), lax servers
// (∕ U+2215, ⁄ U+2044, ∖ U+2216) or Windows' best-fit conversion to a legacy code page turn
// into a separator: ¥ U+00A5 is byte 0x5C, `\`, in the Japanese code page (932) and ₩ U+20A9
// in the Korean one (949), so a Windows application that hands a path to an ANSI file API
// there reads `..¥..¥windows` as `..\..\windows` (the "WorstFit" attacks).
func slashLike(r rune) bool {
	switch r {
	case '\uff0f', '\u2215', '\u2044', '\uff3c', '\u2216', '\ufe68', '\u00a5', '\u20a9':
		return true
	}
	return false
}

// checkUnicodeSegment refuses a non-ASCII segment (followed by another segment or not) that a
// server which normalizes it reads as a `..` segment or a drive root: checkSegments' rules,
// applied to its normalized form (normalizeLookalikes). So `．．`, `‥`, `..／..／etc`,
// `foo／..`, `‥／x` and `C:／windows` are refused; a look-alike separator between names
// (`AC／DC`, `a∕b`, `円＼100`) makes no traversal and passes, as does `…` (`...`).
func checkUnicodeSegment(s string, followed bool) Reason {
	n, changed := normalizeLookalikes(s)
	if hasColon(n) {
		// A drive root needs a colon: the letter or the colon may be a look-alike that NFKC
		// makes ASCII (Ｃ U+FF23, ：U+FF1A, 𝐂, Ⓒ, ﹕...), so `Ｃ：/windows` is `C:/windows`.
		if nf := norm.NFKC.String(n); nf != n { // NFKC is idempotent: checkSegments' second look stops here
			n, changed = nf, true
		}
	}
	if !changed {
		return ""
	}
	if followed {
		n += "/"
	}
	if checkSegments(n) != "" {
		return ReasonLookalike
	}
	return ""
}

// hasColon reports whether s holds ':' or a rune that NFKC makes one (fullwidth ： U+FF1A,
// small ﹕ U+FE55, vertical ︓ U+FE13). TestColonsMatchNFKC checks the list.
func hasColon(s string) bool {
	return strings.ContainsAny(s, ":\uff1a\ufe55\ufe13")
}

// normalizeLookalikes is s as a server that normalizes it reads it: look-alike dots as full
// stops (as many as NFKC makes), look-alike separators as '/', and bytes that are not UTF-8
// dropped, as lax decoders drop them (`.%ff.` is `..` to them; whether such bytes are refused is
// checkUTF8's concern). changed is false when s holds none of these.
func normalizeLookalikes(s string) (n string, changed bool) {
	var b strings.Builder
	done := 0 // s[:done] is in b
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var with string
		switch {
		case r == utf8.RuneError && size == 1: // dropped
		case slashLike(r):
			with = "/"
		case r >= utf8.RuneSelf && dots(r) > 0:
			with = "..."[:dots(r)]
		default:
			i += size
			continue
		}
		b.WriteString(s[done:i])
		b.WriteString(with)
		i += size
		done = i
	}
	if done == 0 {
		return s, false
	}
	b.WriteString(s[done:])
	return b.String(), true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
