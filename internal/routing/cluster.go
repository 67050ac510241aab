package routing

import "time"

// ClusterName builds Istio's outbound cluster name, outbound|port|subset|host.
func ClusterName(port uint32, subset, host string) string {
	return "outbound|" + uitoa(port) + "|" + subset + "|" + host
}

func uitoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b [10]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

// Discovery is how a cluster finds its endpoints.
type Discovery string

// Cluster discovery types, after Istio's ServiceEntry resolution.
const (
	// DiscoveryStatic uses the endpoints listed in the cluster.
	DiscoveryStatic Discovery = "STATIC"
	// DiscoveryDNS lists host names that are resolved when connecting.
	DiscoveryDNS Discovery = "STRICT_DNS"
	// DiscoveryLogicalDNS uses the first address of the single host.
	DiscoveryLogicalDNS Discovery = "LOGICAL_DNS"
	// DiscoveryOriginalDst forwards to the address the request was for
	// (resolution NONE, PASSTHROUGH load balancing).
	DiscoveryOriginalDst Discovery = "ORIGINAL_DST"
)

// Cluster is an upstream: a service port, optionally narrowed to a subset,
// with its endpoints and merged traffic policy.
type Cluster struct {
	Name      string `json:"name"`
	Host      string `json:"host"`
	Port      uint32 `json:"port"`
	Subset    string `json:"subset,omitempty"`
	Namespace string `json:"namespace,omitempty"` // the service's namespace
	// Protocol is the service port's protocol (HTTP, HTTP2, GRPC, TCP, TLS,
	// HTTPS, ...), upper case.
	Protocol  string    `json:"protocol"`
	Discovery Discovery `json:"discovery"`
	// MeshExternal is true for ServiceEntry location MESH_EXTERNAL.
	MeshExternal bool `json:"meshExternal,omitempty"`
	// SubjectAltNames are the ServiceEntry's SANs, verified when the
	// policy's TLS names none.
	SubjectAltNames []string   `json:"subjectAltNames,omitempty"`
	Endpoints       []Endpoint `json:"endpoints"`
	Policy          Policy     `json:"policy"`
	// DestinationRule is "namespace/name" of the rule(s) that shaped
	// Policy, comma-separated when several were merged.
	DestinationRule string `json:"destinationRule,omitempty"`
}

// Endpoint is one upstream instance of a cluster.
type Endpoint struct {
	// Address is "ip:port" or, for DNS clusters, "host:port".
	Address        string            `json:"address"`
	Labels         map[string]string `json:"labels,omitempty"`
	Locality       string            `json:"locality,omitempty"` // region/zone/subzone
	Weight         uint32            `json:"weight"`             // >= 1
	Network        string            `json:"network,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	// TLSMode is "istio" when the endpoint is a michi/Istio proxy that
	// accepts mutual TLS (the security.istio.io/tlsMode label), which
	// turns on auto mTLS.
	TLSMode string `json:"tlsMode,omitempty"`
}

// Policy is a DestinationRule traffic policy with Istio's inheritance
// already applied (subset over top level, port level over both) and
// Istio's defaults filled in.
type Policy struct {
	LoadBalancer   LoadBalancer      `json:"loadBalancer"`
	ConnectionPool ConnectionPool    `json:"connectionPool"`
	Outlier        *OutlierDetection `json:"outlierDetection,omitempty"`
	TLS            *ClientTLS        `json:"tls,omitempty"`
	Tunnel         *Tunnel           `json:"tunnel,omitempty"`
	ProxyProtocol  string            `json:"proxyProtocol,omitempty"` // V1 or V2
	RetryBudget    *RetryBudget      `json:"retryBudget,omitempty"`
}

// LBPolicy names a load-balancing algorithm.
type LBPolicy string

// Load-balancing algorithms. LeastRequest is Istio's default.
const (
	LBLeastRequest LBPolicy = "LEAST_REQUEST"
	LBRoundRobin   LBPolicy = "ROUND_ROBIN"
	LBRandom       LBPolicy = "RANDOM"
	LBPassthrough  LBPolicy = "PASSTHROUGH"
	LBRingHash     LBPolicy = "RING_HASH"
	LBMaglev       LBPolicy = "MAGLEV"
)

// LoadBalancer is the compiled load-balancer settings.
type LoadBalancer struct {
	Policy LBPolicy `json:"policy"`
	// Hash is the consistent-hash key source for RING_HASH and MAGLEV.
	Hash *HashPolicy `json:"hash,omitempty"`
	// MinRingSize is the ring-hash minimum (Envoy default 1024).
	MinRingSize uint64 `json:"minRingSize,omitempty"`
	// MaglevTableSize is the Maglev table size, a prime (Envoy 65537).
	MaglevTableSize uint64      `json:"maglevTableSize,omitempty"`
	Warmup          *Warmup     `json:"warmup,omitempty"`
	Locality        *LocalityLB `json:"locality,omitempty"`
}

// Warmup is Envoy slow start: a new endpoint's weight ramps up over
// Duration from MinPercent, shaped by Aggression.
type Warmup struct {
	Duration   time.Duration `json:"duration"`
	MinPercent float64       `json:"minPercent"`
	Aggression float64       `json:"aggression"`
}

// LocalityLB is Istio's localityLbSetting. It is active only when the
// cluster has outlier detection (Istio applyLocalityFailover), unless
// Enabled says otherwise.
type LocalityLB struct {
	Enabled          bool                 `json:"enabled"`
	Distribute       []LocalityDistribute `json:"distribute,omitempty"`
	Failover         []LocalityFailover   `json:"failover,omitempty"`
	FailoverPriority []string             `json:"failoverPriority,omitempty"`
}

// LocalityDistribute sends traffic from a locality to weighted localities.
type LocalityDistribute struct {
	From string            `json:"from"`
	To   map[string]uint32 `json:"to"`
}

// LocalityFailover names the region to fail over to from a region.
type LocalityFailover struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Unlimited is the circuit-breaker value Istio gives every threshold that
// is not set (2^32-1), overriding Envoy's 1024.
const Unlimited = 1<<32 - 1

// ConnectionPool is the compiled connection-pool settings. Limits are per
// cluster per proxy, as in Envoy.
type ConnectionPool struct {
	MaxConnections           uint32        `json:"maxConnections"`
	MaxPendingRequests       uint32        `json:"maxPendingRequests"`
	MaxRequests              uint32        `json:"maxRequests"`
	MaxRetries               uint32        `json:"maxRetries"`
	ConnectTimeout           time.Duration `json:"connectTimeout"`
	MaxRequestsPerConnection uint32        `json:"maxRequestsPerConnection,omitempty"` // 0 = unlimited
	MaxConnectionDuration    time.Duration `json:"maxConnectionDuration,omitempty"`
	// IdleTimeout closes idle upstream connections (Istio default 1h).
	IdleTimeout            time.Duration `json:"idleTimeout"`
	TCPIdleTimeout         time.Duration `json:"tcpIdleTimeout,omitempty"`
	TCPKeepalive           *TCPKeepalive `json:"tcpKeepalive,omitempty"`
	H2UpgradePolicy        string        `json:"h2UpgradePolicy,omitempty"` // DEFAULT, UPGRADE, DO_NOT_UPGRADE
	UseClientProtocol      bool          `json:"useClientProtocol,omitempty"`
	MaxConcurrentStreams   uint32        `json:"maxConcurrentStreams,omitempty"`
	HTTP2KeepaliveInterval time.Duration `json:"http2KeepaliveInterval,omitempty"`
	HTTP2KeepaliveTimeout  time.Duration `json:"http2KeepaliveTimeout,omitempty"`
}

// TCPKeepalive is SO_KEEPALIVE tuning; zero fields keep the OS default.
type TCPKeepalive struct {
	Probes   uint32        `json:"probes,omitempty"`
	Time     time.Duration `json:"time,omitempty"`
	Interval time.Duration `json:"interval,omitempty"`
}

// OutlierDetection is the compiled outlier-detection settings with Envoy's
// and Istio's defaults filled in.
type OutlierDetection struct {
	Consecutive5xx                 uint32        `json:"consecutive5xx"`           // 0 disables
	ConsecutiveGatewayErrors       uint32        `json:"consecutiveGatewayErrors"` // 0 disables
	ConsecutiveLocalOriginFailures uint32        `json:"consecutiveLocalOriginFailures"`
	SplitExternalLocalOriginErrors bool          `json:"splitExternalLocalOriginErrors,omitempty"`
	Interval                       time.Duration `json:"interval"`
	BaseEjectionTime               time.Duration `json:"baseEjectionTime"`
	MaxEjectionTime                time.Duration `json:"maxEjectionTime"`
	MaxEjectionPercent             uint32        `json:"maxEjectionPercent"`
	// MinHealthPercent is the panic threshold: below it the balancer
	// ignores health. Istio sets 0 (panic disabled) unless configured.
	MinHealthPercent uint32 `json:"minHealthPercent"`
	// ErrorCodes redefines which response codes count as errors
	// (outlierDetectionHttpErrorCodes); empty means 5xx.
	ErrorCodes []int `json:"errorCodes,omitempty"`
}

// TLSMode is a client TLS mode.
type TLSMode string

// Client TLS modes, as in Istio's ClientTLSSettings.
const (
	TLSDisable     TLSMode = "DISABLE"
	TLSSimple      TLSMode = "SIMPLE"
	TLSMutual      TLSMode = "MUTUAL"
	TLSIstioMutual TLSMode = "ISTIO_MUTUAL"
)

// ClientTLS is TLS origination towards the cluster.
type ClientTLS struct {
	Mode               TLSMode  `json:"mode"`
	CertFile           string   `json:"certFile,omitempty"`
	KeyFile            string   `json:"keyFile,omitempty"`
	CAFile             string   `json:"caFile,omitempty"`
	CRLFile            string   `json:"crlFile,omitempty"`
	CredentialName     string   `json:"credentialName,omitempty"`
	SubjectAltNames    []string `json:"subjectAltNames,omitempty"`
	SNI                string   `json:"sni,omitempty"`
	InsecureSkipVerify bool     `json:"insecureSkipVerify,omitempty"`
	// Auto marks ISTIO_MUTUAL chosen by auto mTLS rather than configured.
	Auto bool `json:"auto,omitempty"`
}

// Tunnel is Istio's TrafficPolicy.tunnel (HTTP CONNECT or POST).
type Tunnel struct {
	Protocol   string `json:"protocol"`
	TargetHost string `json:"targetHost"`
	TargetPort uint32 `json:"targetPort"`
}

// RetryBudget limits concurrent retries to a share of active requests.
type RetryBudget struct {
	Percent             float64 `json:"percent"`
	MinRetryConcurrency uint32  `json:"minRetryConcurrency"`
}

// DefaultConnectionPool is what a cluster gets when no DestinationRule
// sets a connection pool: Istio raises every circuit-breaker threshold to
// Unlimited (cluster_traffic_policy.go getDefaultCircuitBreakerThresholds),
// the connect timeout is the mesh default (10s), and idle connections
// close after Envoy's 1h.
func DefaultConnectionPool() ConnectionPool {
	return ConnectionPool{
		MaxConnections:     Unlimited,
		MaxPendingRequests: Unlimited,
		MaxRequests:        Unlimited,
		MaxRetries:         Unlimited,
		ConnectTimeout:     10 * time.Second,
		IdleTimeout:        time.Hour,
		TCPIdleTimeout:     time.Hour,
	}
}
