package config

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Syntax rules for names, stated the way the messages repeat them.
const (
	dns1123LabelRule     = "must be at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
	dns1123SubdomainRule = "must be at most 253 characters of DNS labels (lower-case letters, digits, '-') joined by '.'"
)

var (
	// A first host label may be "*" or start with "*" (Istio
	// labels.IsWildcardDNS1123Label): "*", "*.example.com", and the
	// partial "*-foo.example.com".
	wildcardLabelRE = regexp.MustCompile(`^\*[-a-z0-9]*$`)
	labelNameRE     = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	// RFC 7230 token characters, which is all Istio checks in header
	// names (validHeaderNameRegex).
	headerTokenRE = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
)

// isDNS1123Label reports a DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?,
// at most 63 characters. It is checked by hand, not with a regexp,
// because every host of every resource goes through it on each reload.
func isDNS1123Label(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isDNS1123Subdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isDNS1123Label(l) {
			return false
		}
	}
	return true
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// checkFQDN checks a fully qualified (or short) host name without
// wildcards: DNS labels joined by dots, an optional trailing dot, and a
// top-level label that is not all digits (so that "1.2.3.4" is not taken
// for a name) (Istio agent.ValidateFQDN).
func checkFQDN(host string) error {
	if host == "" {
		return errors.New("must not be empty")
	}
	if len(host) > 255 {
		return fmt.Errorf("%d characters is too long: at most 255", len(host))
	}
	return checkDNSLabels(host)
}

func checkDNSLabels(host string) error {
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if last == "" && len(labels) > 1 {
		labels = labels[:len(labels)-1] // "example.com." is unambiguous
		last = labels[len(labels)-1]
	}
	if _, err := strconv.Atoi(last); err == nil {
		return fmt.Errorf("top-level label %q must not be all digits", last)
	}
	for _, l := range labels {
		if !isDNS1123Label(l) {
			return fmt.Errorf("label %q %s", l, dns1123LabelRule)
		}
	}
	return nil
}

// checkWildcardHost checks a host name that may carry a wildcard in its
// first label, such as "*.example.com" or "*" (Istio
// agent.ValidateWildcardDomain).
func checkWildcardHost(host string) error {
	if host == "" {
		return errors.New("must not be empty")
	}
	if len(host) > 255 {
		return fmt.Errorf("%d characters is too long: at most 255", len(host))
	}
	first, rest, hasRest := strings.Cut(host, ".")
	if strings.HasPrefix(first, "*") {
		if len(first) > 63 || !wildcardLabelRE.MatchString(first) {
			return fmt.Errorf("wildcard label %q is invalid: a wildcard is only allowed as the first character of the first label, as in \"*.example.com\"", first)
		}
		if !hasRest {
			return nil
		}
		if strings.Contains(rest, "*") {
			return errors.New(`a wildcard is only allowed as the first character, as in "*.example.com"`)
		}
		return checkDNSLabels(rest)
	}
	if strings.Contains(host, "*") {
		return errors.New(`a wildcard is only allowed as the first character, as in "*.example.com"`)
	}
	return checkDNSLabels(host)
}

// isPartialWildcard reports hosts like "*foo.com", whose wildcard is not a
// whole label.
func isPartialWildcard(host string) bool {
	return strings.Contains(host, "*") && host != "*" && !strings.HasPrefix(host, "*.")
}

// checkIPOrCIDR accepts "10.0.0.1", "2001:db8::1", "10.0.0.0/8" (Istio
// ValidateIPSubnet).
func checkIPOrCIDR(s string) error {
	if strings.Contains(s, "/") {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("%q is not a valid CIDR block such as 10.0.0.0/8", s)
		}
		return nil
	}
	if !isIP(s) {
		return fmt.Errorf("%q is not a valid IP address or CIDR block", s)
	}
	return nil
}

// checkUnixPath checks the part after "unix://": an absolute path to a
// socket file, or an abstract socket "@name" (Istio ValidateUnixAddress).
func checkUnixPath(p string) error {
	if p == "" {
		return errors.New("unix socket path must not be empty")
	}
	if strings.HasPrefix(p, "@") {
		return nil
	}
	if !path.IsAbs(p) || strings.HasSuffix(p, "/") {
		return fmt.Errorf("unix socket %q must be an absolute path to a file, or @name for an abstract socket", p)
	}
	return nil
}

// checkLabelKey checks a Kubernetes label key: an optional DNS subdomain
// prefix and "/", then a name of at most 63 characters.
func checkLabelKey(k string) error {
	name := k
	if prefix, n, ok := strings.Cut(k, "/"); ok {
		if !isDNS1123Subdomain(prefix) {
			return fmt.Errorf("prefix %q %s", prefix, dns1123SubdomainRule)
		}
		name = n
	}
	if name == "" {
		return errors.New("name part must not be empty")
	}
	if len(name) > 63 || !labelNameRE.MatchString(name) {
		return errors.New("name part must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
	}
	return nil
}

// checkLabelValue checks a Kubernetes label value (empty is allowed).
func checkLabelValue(val string) error {
	if val == "" {
		return nil
	}
	if len(val) > 63 || !labelNameRE.MatchString(val) {
		return errors.New("must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
	}
	return nil
}

func isHeaderToken(s string) bool { return headerTokenRE.MatchString(s) }

// gatewayName checks one entry of a gateways list: "mesh", "name"
// (in the VirtualService's namespace) or "namespace/name". The legacy
// "name.namespace" form still works in Istio but is deprecated, so it
// warns (Istio validateGatewayNames).
func (v *validator) gatewayName(p, g string) {
	if g == "mesh" {
		return
	}
	ns, name, ok := strings.Cut(g, "/")
	if !ok {
		if strings.Contains(g, ".") {
			parts := strings.SplitN(g, ".", 2)
			v.warnf(p, "gateway %q uses the legacy name.namespace form; write %q", g, parts[1]+"/"+parts[0])
			if err := checkFQDN(g); err != nil {
				v.errorf(p, "invalid gateway %q: %v", g, err)
			}
			return
		}
		if !isDNS1123Label(g) {
			v.errorf(p, "invalid gateway name %q: %s", g, dns1123LabelRule)
		}
		return
	}
	if ns == "" || name == "" {
		v.errorf(p, "invalid gateway %q: write namespace/name, both non-empty", g)
		return
	}
	if !isDNS1123Label(ns) {
		v.errorf(p, "invalid namespace %q in gateway %q: %s", ns, g, dns1123LabelRule)
	}
	if !isDNS1123Label(name) {
		v.errorf(p, "invalid gateway name %q in %q: %s", name, g, dns1123LabelRule)
	}
}
