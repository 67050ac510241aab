package explain

// The JSON form of a Result is a public contract (`michi explain -o
// json`): fields may be added, never renamed or removed. Durations are
// strings in Go syntax ("1.5s"), "none" when unset; connection-pool
// limits are strings so that Istio's 2^32-1 can read "unlimited".

// Actions a Result can report.
const (
	// ActionRoute forwards to weighted destinations (including Istio's
	// PassthroughCluster for unknown hosts under ALLOW_ANY).
	ActionRoute = "route"
	// ActionRedirect answers with a redirect.
	ActionRedirect = "redirect"
	// ActionDirectResponse answers with a fixed status and body; the
	// REGISTRY_ONLY BlackHoleCluster 502 is one.
	ActionDirectResponse = "directResponse"
	// ActionNotFound is Envoy's 404 NR: no virtual host or no route.
	ActionNotFound = "notFound"
)

// Result is the proxy's decision for one request, step by step.
type Result struct {
	Request RequestInfo `json:"request"`
	Proxy   ProxyInfo   `json:"proxy"`
	// Port is the listener port the request is routed on: the Host
	// header's port, else the scheme's default.
	Port uint32 `json:"port"`
	// RouteConfig says whether the port has HTTP routes, and how many
	// virtual hosts they have.
	RouteConfig *RouteConfigInfo `json:"routeConfig"`

	// VirtualHost is the chosen virtual host's name ("host:port"), empty
	// when none matched. Domains are its domains and MatchedDomain the one
	// that took the request.
	VirtualHost   string   `json:"virtualHost"`
	Domains       []string `json:"domains,omitempty"`
	MatchedDomain string   `json:"matchedDomain,omitempty"`
	// VirtualServices are those whose rules the virtual host holds: one
	// on a sidecar, possibly several merged on a gateway; none for a
	// service's default route.
	VirtualServices []string `json:"virtualServices,omitempty"`
	// VirtualService is "namespace/name" of the VirtualService whose rule
	// routes the request; empty when the service's default route applies
	// or nothing matched.
	VirtualService string `json:"virtualService"`
	// RuleIndex is the rule's index in the VirtualService's spec.http,
	// -1 for a default route or when nothing matched; MatchIndex is the
	// index in its match list, -1 for a rule without match.
	RuleIndex  int    `json:"ruleIndex"`
	MatchIndex int    `json:"matchIndex"`
	RuleName   string `json:"ruleName"`
	// Delegate is "namespace/name" of the delegate VirtualService the
	// rule was merged from, and DelegateRuleIndex its rule.
	Delegate          string `json:"delegate,omitempty"`
	DelegateRuleIndex *int   `json:"delegateRuleIndex,omitempty"`
	// Rules are the routes tried, in order, up to the one that matched.
	Rules []RuleTrial `json:"rules"`

	Action string `json:"action"`
	// Status is the status the proxy answers by itself (404, a redirect
	// code, a direct response, the 502 of BlackHoleCluster); 0 when the
	// upstream answers.
	Status int `json:"status,omitempty"`
	// Reason explains the action in one sentence.
	Reason string `json:"reason"`

	Destinations   []Destination   `json:"destinations"`
	Redirect       *Redirect       `json:"redirect,omitempty"`
	DirectResponse *DirectResponse `json:"directResponse,omitempty"`
	Rewrite        *Rewrite        `json:"rewrite,omitempty"`
	Headers        *Headers        `json:"headers,omitempty"`
	Timeout        string          `json:"timeout"`
	Retries        *Retries        `json:"retries"`
	Fault          *Fault          `json:"fault"`
	Mirrors        []Mirror        `json:"mirrors"`
	CORS           *CORS           `json:"cors,omitempty"`

	// Notes are remarks that do not fit a step: config-time filtering,
	// listener mismatches.
	Notes []string `json:"notes,omitempty"`
}

// Routed reports whether a route exists for the request: everything but
// a 404. `michi explain` exits 1 when it does not.
func (r *Result) Routed() bool { return r.Action != ActionNotFound }

// RequestInfo is the request as the proxy sees it.
type RequestInfo struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	Scheme string `json:"scheme"`
	// Authority is the Host header; Host is it without the port.
	Authority string              `json:"authority"`
	Host      string              `json:"host"`
	Path      string              `json:"path"` // normalized, without query
	Query     string              `json:"query,omitempty"`
	Headers   map[string][]string `json:"headers,omitempty"`
	SourceIP  string              `json:"sourceIP,omitempty"`
}

// ProxyInfo is the identity the table was compiled for.
type ProxyInfo struct {
	Role           string            `json:"role"`
	Namespace      string            `json:"namespace"`
	Labels         map[string]string `json:"labels,omitempty"`
	Gateways       []string          `json:"gateways,omitempty"`
	OutboundPolicy string            `json:"outboundPolicy"`
	// Servers are the gateway servers listening on the request's port.
	Servers []Server `json:"servers,omitempty"`
}

// Server is a gateway server.
type Server struct {
	Gateway  string   `json:"gateway"`
	Name     string   `json:"name,omitempty"`
	Protocol string   `json:"protocol"`
	Hosts    []string `json:"hosts"`
	TLSMode  string   `json:"tlsMode,omitempty"`
}

// RouteConfigInfo describes the route configuration of the port.
type RouteConfigInfo struct {
	Port         uint32 `json:"port"`
	VirtualHosts int    `json:"virtualHosts"`
}

// RuleTrial is one route tried, and why it matched or not.
type RuleTrial struct {
	// Route is the index in the virtual host's route list.
	Route             int    `json:"route"`
	VirtualService    string `json:"virtualService"`
	RuleIndex         int    `json:"ruleIndex"`
	MatchIndex        int    `json:"matchIndex"`
	Name              string `json:"name,omitempty"`
	Delegate          string `json:"delegate,omitempty"`
	DelegateRuleIndex *int   `json:"delegateRuleIndex,omitempty"`
	// Conditions are the request-time conditions of the match, readable.
	Conditions []string `json:"conditions"`
	Matched    bool     `json:"matched"`
	// Reason is the first condition that failed; empty when matched.
	Reason string `json:"reason,omitempty"`
}

// Destination is one weighted destination and the cluster behind it.
type Destination struct {
	Host    string  `json:"host"`
	Subset  string  `json:"subset"`
	Port    uint32  `json:"port"`
	Weight  uint32  `json:"weight"`
	Percent float64 `json:"percent"`
	Cluster string  `json:"cluster"`
	// ClusterFound is false when the table has no such cluster: Envoy
	// answers 503 NC, and Problem says why that may be.
	ClusterFound bool   `json:"clusterFound"`
	Problem      string `json:"problem,omitempty"`

	// Endpoints are the cluster's endpoints after subset selection.
	Endpoints []Endpoint `json:"endpoints"`
	// OriginalDestination is where a cluster without endpoints of its own
	// (PassthroughCluster, resolution NONE) connects: the request's host
	// and port.
	OriginalDestination string  `json:"originalDestination,omitempty"`
	Discovery           string  `json:"discovery,omitempty"`
	Protocol            string  `json:"protocol,omitempty"`
	DestinationRule     string  `json:"destinationRule,omitempty"`
	Policy              *Policy `json:"policy,omitempty"`
	// Hash is the consistent-hash key the route computes for the
	// destination.
	Hash *Hash `json:"hash,omitempty"`
	// Headers are the destination-level header operations.
	Headers *Headers `json:"headers,omitempty"`
	// UpstreamAuthority and UpstreamPath are what the upstream receives
	// after rewrites.
	UpstreamAuthority string `json:"upstreamAuthority,omitempty"`
	UpstreamPath      string `json:"upstreamPath,omitempty"`
}

// Endpoint is one upstream instance.
type Endpoint struct {
	Address        string            `json:"address"`
	Labels         map[string]string `json:"labels,omitempty"`
	Locality       string            `json:"locality,omitempty"`
	Weight         uint32            `json:"weight"`
	TLSMode        string            `json:"tlsMode,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
}

// Hash is a consistent-hash key: what is hashed and the request's value.
type Hash struct {
	// Source is "header NAME", "cookie NAME", "source IP" or "query
	// parameter NAME".
	Source  string `json:"source"`
	Value   string `json:"value,omitempty"`
	Present bool   `json:"present"`
	// Effect says what happens without a value.
	Effect string `json:"effect,omitempty"`
}

// Policy is a cluster's traffic policy in Envoy's terms.
type Policy struct {
	LoadBalancer     LoadBalancer      `json:"loadBalancer"`
	ConnectionPool   ConnectionPool    `json:"connectionPool"`
	OutlierDetection *OutlierDetection `json:"outlierDetection"`
	TLS              *TLS              `json:"tls"`
	Tunnel           string            `json:"tunnel,omitempty"`
	ProxyProtocol    string            `json:"proxyProtocol,omitempty"`
	RetryBudget      string            `json:"retryBudget,omitempty"`
}

// LoadBalancer is the load-balancing algorithm and its settings.
type LoadBalancer struct {
	Algorithm string `json:"algorithm"`
	// HashOn is the key source for RING_HASH and MAGLEV.
	HashOn          string `json:"hashOn,omitempty"`
	MinRingSize     uint64 `json:"minRingSize,omitempty"`
	MaglevTableSize uint64 `json:"maglevTableSize,omitempty"`
	Warmup          string `json:"warmup,omitempty"`
	Locality        string `json:"locality"`
}

// ConnectionPool is Envoy's circuit-breaker thresholds and connection
// settings. Limits read "unlimited" for Istio's 2^32-1.
type ConnectionPool struct {
	MaxConnections           string `json:"maxConnections"`
	MaxPendingRequests       string `json:"maxPendingRequests"`
	MaxRequests              string `json:"maxRequests"`
	MaxRetries               string `json:"maxRetries"`
	ConnectTimeout           string `json:"connectTimeout"`
	MaxRequestsPerConnection string `json:"maxRequestsPerConnection"`
	MaxConnectionDuration    string `json:"maxConnectionDuration"`
	IdleTimeout              string `json:"idleTimeout"`
	H2UpgradePolicy          string `json:"h2UpgradePolicy,omitempty"`
	UseClientProtocol        bool   `json:"useClientProtocol,omitempty"`
}

// OutlierDetection is the cluster's outlier detection.
type OutlierDetection struct {
	Consecutive5xx                 uint32 `json:"consecutive5xx"`
	ConsecutiveGatewayErrors       uint32 `json:"consecutiveGatewayErrors"`
	ConsecutiveLocalOriginFailures uint32 `json:"consecutiveLocalOriginFailures"`
	SplitExternalLocalOriginErrors bool   `json:"splitExternalLocalOriginErrors"`
	Interval                       string `json:"interval"`
	BaseEjectionTime               string `json:"baseEjectionTime"`
	MaxEjectionTime                string `json:"maxEjectionTime"`
	MaxEjectionPercent             uint32 `json:"maxEjectionPercent"`
	// MinHealthPercent is Envoy's panic threshold; 0 disables panic mode.
	MinHealthPercent uint32 `json:"minHealthPercent"`
	ErrorCodes       []int  `json:"errorCodes,omitempty"`
}

// TLS is the TLS the proxy originates towards the cluster.
type TLS struct {
	Mode string `json:"mode"`
	// Auto is set when auto mTLS chose ISTIO_MUTUAL.
	Auto bool `json:"auto"`
	// SNI is the server name sent; AutoSNI is set when it is the
	// request's host (Envoy auto_sni).
	SNI     string `json:"sni,omitempty"`
	AutoSNI bool   `json:"autoSNI,omitempty"`
	// Verify says how the server certificate is checked.
	Verify             string `json:"verify"`
	CACertificates     string `json:"caCertificates,omitempty"`
	ClientCertificate  string `json:"clientCertificate,omitempty"`
	CredentialName     string `json:"credentialName,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// Redirect is the redirect the proxy answers with.
type Redirect struct {
	Code     int    `json:"code"`
	Location string `json:"location"`
}

// DirectResponse is a fixed answer.
type DirectResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body,omitempty"`
}

// Rewrite is the route's rewrite as configured.
type Rewrite struct {
	URIPrefix    *string `json:"uriPrefix,omitempty"`
	Authority    string  `json:"authority,omitempty"`
	RegexMatch   string  `json:"regexMatch,omitempty"`
	RegexRewrite string  `json:"regexRewrite,omitempty"`
}

// Headers are header operations.
type Headers struct {
	RequestSet     []Header `json:"requestSet,omitempty"`
	RequestAdd     []Header `json:"requestAdd,omitempty"`
	RequestRemove  []string `json:"requestRemove,omitempty"`
	ResponseSet    []Header `json:"responseSet,omitempty"`
	ResponseAdd    []Header `json:"responseAdd,omitempty"`
	ResponseRemove []string `json:"responseRemove,omitempty"`
	HostRewrite    string   `json:"hostRewrite,omitempty"`
}

// Header is a header name and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Retries is the route's retry policy.
type Retries struct {
	// Attempts is the number of retries: at most 1+Attempts tries.
	Attempts             uint32   `json:"attempts"`
	RetryOn              []string `json:"retryOn"`
	RetriableStatusCodes []int    `json:"retriableStatusCodes,omitempty"`
	PerTryTimeout        string   `json:"perTryTimeout"`
	BackoffBase          string   `json:"backoffBase"`
	BackoffMax           string   `json:"backoffMax"`
	// RetryOtherHosts is Envoy's previous_hosts predicate.
	RetryOtherHosts       bool `json:"retryOtherHosts"`
	HostSelectionAttempts int  `json:"hostSelectionAttempts,omitempty"`
	RetryRemoteLocalities bool `json:"retryRemoteLocalities,omitempty"`
	// IstioDefault is set for Istio's built-in policy (no retries field).
	IstioDefault bool `json:"istioDefault"`
}

// Fault is the route's fault injection.
type Fault struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays Percent of requests.
type FaultDelay struct {
	Duration string  `json:"duration"`
	Percent  float64 `json:"percent"`
}

// FaultAbort aborts Percent of requests.
type FaultAbort struct {
	HTTPStatus int     `json:"httpStatus,omitempty"`
	GRPCStatus *int    `json:"grpcStatus,omitempty"`
	Percent    float64 `json:"percent"`
}

// Mirror is a mirror destination.
type Mirror struct {
	Host         string  `json:"host"`
	Subset       string  `json:"subset,omitempty"`
	Port         uint32  `json:"port,omitempty"`
	Cluster      string  `json:"cluster"`
	ClusterFound bool    `json:"clusterFound"`
	Percent      float64 `json:"percent"`
}

// CORS is the route's CORS policy and what it does to this request.
type CORS struct {
	AllowOrigins     []string `json:"allowOrigins"`
	AllowMethods     string   `json:"allowMethods,omitempty"`
	AllowHeaders     string   `json:"allowHeaders,omitempty"`
	ExposeHeaders    string   `json:"exposeHeaders,omitempty"`
	MaxAge           string   `json:"maxAge,omitempty"`
	AllowCredentials *bool    `json:"allowCredentials,omitempty"`
	// UnmatchedPreflights is "forward" or "ignore".
	UnmatchedPreflights string `json:"unmatchedPreflights"`
	// Effect is what the filter does with this request.
	Effect string `json:"effect"`
}
