package dataplane

import (
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/michi-mesh/michi/internal/routing"
)

// hashKey computes the consistent-hash key for a destination's hash
// policy with xxHash64, as Envoy does. ok is false when the request has
// no value to hash (Envoy then picks at random).
func (s *Server) hashKey(ex *exchange, hp *routing.HashPolicy) (uint64, bool) {
	if v, ok := HashInput(ex.r, ex.path, hp); ok {
		return xxhash.Sum64String(v), true
	}
	if hp.Cookie != nil && hp.Cookie.HasTTL {
		// Envoy generates the cookie when it is absent and a TTL is set,
		// so the client sticks from its next request on.
		v := generatedCookieValue(ex.r)
		ex.setCookie = hashCookie(hp.Cookie, v)
		return xxhash.Sum64String(v), true
	}
	return 0, false
}

// HashInput returns the value of r that hash policy hp hashes: the
// header (pseudo headers from the request line, with path the normalized
// path), the cookie, the client IP or the query parameter. ok is false
// when r has none; for a cookie policy with a TTL the proxy then
// generates the cookie. `michi explain` calls it too, to show the key.
func HashInput(r *http.Request, path string, hp *routing.HashPolicy) (string, bool) {
	switch {
	case hp.Header != "":
		return (&routing.Request{Header: r.Header, Authority: r.Host, Method: r.Method, Path: path}).HeaderValue(hp.Header)
	case hp.Cookie != nil:
		if c, err := r.Cookie(hp.Cookie.Name); err == nil {
			return c.Value, true
		}
	case hp.SourceIP:
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			return ip, true
		}
	case hp.QueryParam != "":
		return (&routing.Request{RawQuery: r.URL.RawQuery}).QueryValue(hp.QueryParam)
	}
	return "", false
}

// generatedCookieValue derives a cookie value from the client address
// and a random salt.
func generatedCookieValue(r *http.Request) string {
	var b [8]byte
	v := xxhash.Sum64String(r.RemoteAddr + strconv.FormatUint(rand.Uint64(), 16))
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// hashCookie renders the Set-Cookie value Envoy sends for a generated
// hash cookie: name, value, Max-Age from the TTL (a session cookie when
// the TTL is 0), path, HttpOnly, and the configured attributes.
func hashCookie(c *routing.CookieHash, value string) string {
	var b strings.Builder
	b.WriteString(c.Name)
	b.WriteByte('=')
	b.WriteString(value)
	if secs := int64(c.TTL.Seconds()); secs > 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(secs, 10))
	}
	if c.Path != "" {
		b.WriteString("; Path=")
		b.WriteString(c.Path)
	}
	b.WriteString("; HttpOnly")
	for _, a := range c.Attributes {
		b.WriteString("; ")
		b.WriteString(a.Name)
		if a.Value != "" {
			b.WriteByte('=')
			b.WriteString(a.Value)
		}
	}
	return b.String()
}

// newRequestID formats a random UUID v4, as Envoy generates x-request-id.
func newRequestID(rnd func() uint64) string {
	var u [16]byte
	a, b := rnd(), rnd()
	for i := 0; i < 8; i++ {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:], u[10:])
	return string(out[:])
}

func randUint64() uint64 { return rand.Uint64() }
