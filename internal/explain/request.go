package explain

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/michi-mesh/michi/internal/dataplane"
)

// Request is a request to explain, as a client would send it.
type Request struct {
	Method string
	URL    *url.URL
	// Header holds the -H headers; a Host header is kept apart in Host.
	Header http.Header
	// Host overrides the URL's host:port as the Host header, as curl's
	// -H 'Host: ...' does. Routing follows the Host header.
	Host string
	// SourceIP is the client address, for source-IP consistent hashing;
	// invalid when not given.
	SourceIP netip.Addr
}

// ParseTarget splits the request argument of `michi explain`: either one
// argument "METHOD URL" or "URL", or two arguments METHOD and URL. The
// method defaults to GET.
func ParseTarget(args []string) (method, rawURL string, err error) {
	var fields []string
	for _, a := range args {
		fields = append(fields, strings.Fields(a)...)
	}
	switch len(fields) {
	case 1:
		return http.MethodGet, fields[0], nil
	case 2:
		return fields[0], fields[1], nil
	case 0:
		return "", "", errors.New("no request given; want 'METHOD URL', e.g. 'GET http://reviews:9080/'")
	}
	return "", "", fmt.Errorf("request %q: want 'METHOD URL' or 'URL'", strings.Join(args, " "))
}

// NewRequest checks and assembles a request. headers are "Name: value"
// lines; sourceIP may be empty. Errors describe what the user typed
// wrong.
func NewRequest(method, rawURL string, headers []string, sourceIP string) (*Request, error) {
	if !isToken(method) {
		return nil, fmt.Errorf("method %q is not an HTTP method token", method)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %v", rawURL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("URL %q: want an absolute http:// or https:// URL", rawURL)
	case u.Host == "":
		return nil, fmt.Errorf("URL %q has no host", rawURL)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.Fragment, u.RawFragment, u.User = "", "", nil // never sent

	req := &Request{Method: method, URL: u, Header: http.Header{}}
	for _, line := range headers {
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || !isToken(name) {
			return nil, fmt.Errorf("header %q: want 'Name: value'", line)
		}
		value = strings.TrimSpace(value)
		if strings.EqualFold(name, "Host") {
			if value == "" {
				return nil, fmt.Errorf("header %q: empty host", line)
			}
			req.Host = value
			continue
		}
		req.Header.Add(name, value)
	}
	if sourceIP != "" {
		ip, err := netip.ParseAddr(sourceIP)
		if err != nil {
			return nil, fmt.Errorf("--source-ip %q: not an IP address", sourceIP)
		}
		req.SourceIP = ip
	}
	if _, _, _, ok := dataplane.RequestView(req.httpRequest(), 0); !ok {
		return nil, fmt.Errorf("host %q: the port is not a number from 1 to 65535", req.authority())
	}
	return req, nil
}

// authority is the Host header the request carries.
func (r *Request) authority() string {
	if r.Host != "" {
		return r.Host
	}
	return r.URL.Host
}

// httpRequest is the request as the proxy's HTTP server hands it over,
// so that the dataplane's own functions can read it.
func (r *Request) httpRequest() *http.Request {
	hr := &http.Request{
		Method:     r.Method,
		URL:        &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     r.Header.Clone(),
		Host:       r.authority(),
	}
	if r.SourceIP.IsValid() {
		hr.RemoteAddr = net.JoinHostPort(r.SourceIP.String(), "0")
	}
	return hr
}

// isToken reports whether s is an RFC 9110 token (methods, header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
