package routing

import (
	"regexp"
	"time"
)

// Route is one compiled route: an Istio HTTPRoute expanded per match, as
// Envoy receives it. Exactly one of Forward, Redirect and DirectResponse is
// set.
type Route struct {
	// Name is Envoy's route name, HTTPRoute.name joined with the match name
	// by "." (istio route.go TranslateRoute); %ROUTE_NAME% in access logs.
	Name string `json:"name,omitempty"`
	// StatPrefix is the match's statPrefix: Envoy keeps per-route stats
	// under it when set.
	StatPrefix string `json:"statPrefix,omitempty"`
	// VirtualService is "namespace/name" of the VirtualService that
	// produced the route, or "" for the default route of a service.
	VirtualService string `json:"virtualService,omitempty"`
	// RuleIndex is the index in spec.http of the rule; MatchIndex the index
	// in its match list, or -1 when the rule has no match. For a route
	// merged from a delegate, Delegate names the delegate and
	// DelegateRuleIndex its rule.
	RuleIndex         int    `json:"ruleIndex"`
	MatchIndex        int    `json:"matchIndex"`
	Delegate          string `json:"delegate,omitempty"`
	DelegateRuleIndex int    `json:"delegateRuleIndex,omitempty"`

	Match Match `json:"match"`

	Forward        *Forward        `json:"forward,omitempty"`
	Redirect       *Redirect       `json:"redirect,omitempty"`
	DirectResponse *DirectResponse `json:"directResponse,omitempty"`

	Rewrite *Rewrite  `json:"rewrite,omitempty"`
	Headers HeaderOps `json:"headers,omitzero"`
	// Timeout is the route timeout covering all tries; 0 means none
	// (Istio sets Envoy's timeout to 0 when unset).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retry is nil when retries are disabled (attempts: 0).
	Retry   *RetryPolicy `json:"retry,omitempty"`
	Fault   *Fault       `json:"fault,omitempty"`
	Mirrors []Mirror     `json:"mirrors,omitempty"`
	CORS    *CORS        `json:"cors,omitempty"`
}

// Action names which action the route takes.
func (r *Route) Action() string {
	switch {
	case r.Forward != nil:
		return "route"
	case r.Redirect != nil:
		return "redirect"
	case r.DirectResponse != nil:
		return "directResponse"
	}
	return "none"
}

// Forward sends the request to one of several weighted destinations.
type Forward struct {
	Destinations []*Destination `json:"destinations"`
	// TotalWeight is the sum of the destinations' weights. Weights are
	// relative (Istio does not require them to sum to 100).
	TotalWeight uint32 `json:"totalWeight"`
}

// Pick returns the destination for a random number n in [0, TotalWeight).
func (f *Forward) Pick(n uint32) *Destination {
	for _, d := range f.Destinations {
		if n < d.Weight {
			return d
		}
		n -= d.Weight
	}
	return f.Destinations[len(f.Destinations)-1]
}

// Destination is one weighted destination of a route.
type Destination struct {
	// Cluster is the Envoy cluster name, outbound|port|subset|host.
	Cluster string `json:"cluster"`
	Host    string `json:"host"`
	Subset  string `json:"subset,omitempty"`
	Port    uint32 `json:"port,omitempty"`
	Weight  uint32 `json:"weight"`
	// Headers are the destination-level header operations.
	Headers HeaderOps `json:"headers,omitzero"`
	// Hash is the consistent-hash policy of the destination's
	// DestinationRule; Envoy carries hash policies on the route.
	Hash *HashPolicy `json:"hash,omitempty"`
}

// HashPolicy says what to hash for consistent-hash load balancing.
// Exactly one source is set.
type HashPolicy struct {
	// Header is in canonical form (the compiler canonicalizes it), so the
	// request path looks it up as is.
	Header     string      `json:"header,omitempty"`
	Cookie     *CookieHash `json:"cookie,omitempty"`
	SourceIP   bool        `json:"sourceIP,omitempty"`
	QueryParam string      `json:"queryParam,omitempty"`
}

// CookieHash hashes on a cookie. With a TTL set the proxy generates the
// cookie when the request has none (Envoy hash_policy.cookie).
type CookieHash struct {
	Name       string        `json:"name"`
	Path       string        `json:"path,omitempty"`
	TTL        time.Duration `json:"ttl,omitempty"`
	HasTTL     bool          `json:"hasTTL,omitempty"`
	Attributes []CookieAttr  `json:"attributes,omitempty"`
}

// CookieAttr is an extra attribute on a generated cookie.
type CookieAttr struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// DerivePort says where a redirect takes its port from when no explicit
// port is given.
type DerivePort string

// Redirect port derivation. FromProtocolDefault leaves the port out, so
// the scheme's default applies.
const (
	DeriveNone          DerivePort = ""
	FromProtocolDefault DerivePort = "FROM_PROTOCOL_DEFAULT"
)

// Redirect answers with an HTTP redirect built from the request URL.
type Redirect struct {
	// Path replaces the whole path (Istio redirect.uri).
	Path string `json:"path,omitempty"`
	// PrefixRewrite replaces the matched prefix; HasPrefixRewrite tells an
	// empty rewrite from none.
	PrefixRewrite    string `json:"prefixRewrite,omitempty"`
	HasPrefixRewrite bool   `json:"hasPrefixRewrite,omitempty"`
	Authority        string `json:"authority,omitempty"`
	// Port is the port to put in Location; 0 keeps the request's.
	// FROM_REQUEST_PORT is resolved at compile time to the listener port,
	// as Istio does.
	Port       uint32     `json:"port,omitempty"`
	DerivePort DerivePort `json:"derivePort,omitempty"`
	Scheme     string     `json:"scheme,omitempty"`
	Code       int        `json:"code"`
}

// DirectResponse answers with a fixed status and body.
type DirectResponse struct {
	Status int    `json:"status"`
	Body   []byte `json:"body,omitempty"`
}

// Rewrite changes the request before it is forwarded.
type Rewrite struct {
	// URIPrefix replaces the matched prefix of the path, as Envoy's
	// prefix_rewrite does (a plain string swap, not segment-aware). With
	// an exact or regex match the whole path is the matched prefix.
	URIPrefix    string `json:"uriPrefix,omitempty"`
	HasURIPrefix bool   `json:"hasUriPrefix,omitempty"`
	Authority    string `json:"authority,omitempty"`
	// Regex is Istio's uriRegexRewrite: every match of the pattern in the
	// path is replaced with Substitution (\1 style groups).
	Regex *RegexRewrite `json:"regex,omitempty"`
}

// RegexRewrite is a compiled uriRegexRewrite.
type RegexRewrite struct {
	Pattern      string `json:"pattern"`
	Substitution string `json:"substitution"`
	re           *regexp.Regexp
	repl         string // Substitution in Go's $1 syntax
}

// NewRegexRewrite compiles a regex rewrite. Envoy substitutions name
// capture groups as \1; Go's regexp uses ${1}.
func NewRegexRewrite(pattern, substitution string) (*RegexRewrite, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	return &RegexRewrite{Pattern: pattern, Substitution: substitution, re: re, repl: envoySubstitution(substitution)}, nil
}

// Apply rewrites path.
func (r *RegexRewrite) Apply(path string) string {
	return r.re.ReplaceAllString(path, r.repl)
}

func envoySubstitution(s string) string {
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			out = append(out, '$', '{', s[i+1], '}')
			i++
		case c == '$':
			out = append(out, '$', '$')
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// HeaderOps are Istio header operations for requests and responses.
type HeaderOps struct {
	RequestSet     []Header `json:"requestSet,omitempty"`
	RequestAdd     []Header `json:"requestAdd,omitempty"`
	RequestRemove  []string `json:"requestRemove,omitempty"`
	ResponseSet    []Header `json:"responseSet,omitempty"`
	ResponseAdd    []Header `json:"responseAdd,omitempty"`
	ResponseRemove []string `json:"responseRemove,omitempty"`
	// HostRewrite is set when the operations set Host or :authority, which
	// Istio turns into a host rewrite.
	HostRewrite string `json:"hostRewrite,omitempty"`
}

// Header is a header name and value. Names are in canonical form.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// IsZero reports whether there are no operations.
func (h HeaderOps) IsZero() bool {
	return len(h.RequestSet) == 0 && len(h.RequestAdd) == 0 && len(h.RequestRemove) == 0 &&
		len(h.ResponseSet) == 0 && len(h.ResponseAdd) == 0 && len(h.ResponseRemove) == 0 && h.HostRewrite == ""
}

// RetryOn is a set of Envoy retry conditions.
type RetryOn uint32

// Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on conditions.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryResetBeforeRequest
	RetryConnectFailure
	RetryRetriable4xx
	RetryRefusedStream
	RetryRetriableStatusCodes
	RetryRetriableHeaders
	RetryEnvoyRateLimited
	RetryHTTP3PostConnectFailure
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCResourceExhausted
	RetryGRPCInternal
	RetryGRPCUnavailable
)

// RetryOnTokens maps Istio's retryOn tokens to conditions.
var RetryOnTokens = map[string]RetryOn{
	"5xx":                        Retry5xx,
	"gateway-error":              RetryGatewayError,
	"reset":                      RetryReset,
	"reset-before-request":       RetryResetBeforeRequest,
	"connect-failure":            RetryConnectFailure,
	"retriable-4xx":              RetryRetriable4xx,
	"refused-stream":             RetryRefusedStream,
	"retriable-status-codes":     RetryRetriableStatusCodes,
	"retriable-headers":          RetryRetriableHeaders,
	"envoy-ratelimited":          RetryEnvoyRateLimited,
	"http3-post-connect-failure": RetryHTTP3PostConnectFailure,
	"cancelled":                  RetryGRPCCancelled,
	"deadline-exceeded":          RetryGRPCDeadlineExceeded,
	"resource-exhausted":         RetryGRPCResourceExhausted,
	"internal":                   RetryGRPCInternal,
	"unavailable":                RetryGRPCUnavailable,
}

// Has reports whether all of c are in the set.
func (r RetryOn) Has(c RetryOn) bool { return r&c == c }

// MarshalText lists the conditions, for config dumps and goldens.
func (r RetryOn) MarshalText() ([]byte, error) {
	var out []byte
	for _, tok := range retryOnOrder {
		if r.Has(RetryOnTokens[tok]) {
			if len(out) > 0 {
				out = append(out, ',')
			}
			out = append(out, tok...)
		}
	}
	return out, nil
}

var retryOnOrder = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
	"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
	"envoy-ratelimited", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "resource-exhausted", "internal", "unavailable",
}

// RetryPolicy is a compiled HTTPRetry with Envoy's semantics.
type RetryPolicy struct {
	// NumRetries is the number of retries: a request is tried at most
	// 1+NumRetries times.
	NumRetries           uint32        `json:"numRetries"`
	RetryOn              RetryOn       `json:"retryOn"`
	RetriableStatusCodes []int         `json:"retriableStatusCodes,omitempty"`
	PerTryTimeout        time.Duration `json:"perTryTimeout,omitempty"`
	// BackoffBase is Envoy's base interval (25ms unless Istio's backoff is
	// set); the wait before retry n is random in [0, (2^n-1)*base), capped
	// at BackoffMax (10x base).
	BackoffBase time.Duration `json:"backoffBase"`
	BackoffMax  time.Duration `json:"backoffMax"`
	// RetryOtherHosts is Envoy's previous_hosts predicate: a retry avoids
	// the endpoints already tried (up to HostSelectionAttempts picks).
	RetryOtherHosts       bool `json:"retryOtherHosts,omitempty"`
	HostSelectionAttempts int  `json:"hostSelectionAttempts,omitempty"`
	RetryRemoteLocalities bool `json:"retryRemoteLocalities,omitempty"`
	// Default marks Istio's built-in policy (no retries field anywhere).
	Default bool `json:"default,omitempty"`
}

// RetriableStatus reports whether code is in the retriable status codes.
func (p *RetryPolicy) RetriableStatus(code int) bool {
	for _, c := range p.RetriableStatusCodes {
		if c == code {
			return true
		}
	}
	return false
}

// Fault is an Istio HTTPFaultInjection. Delay and abort are independent.
// Percentages are per million, Istio's Percent precision.
type Fault struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays a share of requests.
type FaultDelay struct {
	Duration   time.Duration `json:"duration"`
	PerMillion uint32        `json:"perMillion"`
}

// FaultAbort aborts a share of requests with an HTTP status or, for gRPC,
// HTTP 200 with a grpc-status.
type FaultAbort struct {
	HTTPStatus int    `json:"httpStatus,omitempty"`
	GRPCStatus int    `json:"grpcStatus,omitempty"`
	IsGRPC     bool   `json:"isGrpc,omitempty"`
	PerMillion uint32 `json:"perMillion"`
}

// Million is the denominator of per-million fractions.
const Million = 1_000_000

// Mirror copies a share of requests to another destination, fire and
// forget.
type Mirror struct {
	Cluster    string `json:"cluster"`
	Host       string `json:"host"`
	Subset     string `json:"subset,omitempty"`
	Port       uint32 `json:"port,omitempty"`
	PerMillion uint32 `json:"perMillion"`
}

// CORS is a compiled Istio CorsPolicy.
type CORS struct {
	AllowOrigins     []StringMatch `json:"allowOrigins,omitempty"`
	AllowMethods     string        `json:"allowMethods,omitempty"`
	AllowHeaders     string        `json:"allowHeaders,omitempty"`
	ExposeHeaders    string        `json:"exposeHeaders,omitempty"`
	MaxAge           string        `json:"maxAge,omitempty"`
	AllowCredentials *bool         `json:"allowCredentials,omitempty"`
	// ForwardNotMatchingPreflights is true unless unmatchedPreflights is
	// IGNORE: a preflight whose origin does not match goes upstream.
	ForwardNotMatchingPreflights bool `json:"forwardNotMatchingPreflights"`
}

// OriginAllowed reports whether origin matches AllowOrigins.
func (c *CORS) OriginAllowed(origin string) bool {
	for i := range c.AllowOrigins {
		if c.AllowOrigins[i].Matches(origin) {
			return true
		}
	}
	return false
}

// DefaultRetryPolicy is Istio's outbound default when no VirtualService
// sets retries (istio route/retry/retry.go, 1.24+): two retries on
// connect-failure, refused-stream, unavailable, cancelled and
// retriable-status-codes with no codes (503 was dropped in 1.24,
// istio/istio#52111), avoiding previously tried hosts.
func DefaultRetryPolicy() *RetryPolicy {
	return &RetryPolicy{
		NumRetries:            2,
		RetryOn:               RetryConnectFailure | RetryRefusedStream | RetryGRPCUnavailable | RetryGRPCCancelled | RetryRetriableStatusCodes,
		BackoffBase:           25 * time.Millisecond,
		BackoffMax:            250 * time.Millisecond,
		RetryOtherHosts:       true,
		HostSelectionAttempts: 5,
		Default:               true,
	}
}
