package compile

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/routing"
)

// Defaults Istio and Envoy apply to a cluster whose policy leaves a field
// unset.
const (
	// Envoy outlier_detection defaults.
	defaultConsecutive5xx          = 5
	defaultConsecutiveLocalFailure = 5
	defaultOutlierInterval         = 10 * time.Second
	defaultBaseEjectionTime        = 30 * time.Second
	defaultMaxEjectionTime         = 300 * time.Second
	defaultMaxEjectionPercent      = 10

	// Envoy load-balancer defaults.
	defaultMinRingSize     = 1024
	defaultMaglevTableSize = 65537
	defaultWarmupPercent   = 10
	defaultWarmupAggr      = 1.0

	// Istio retry_budget defaults (destination_rule.proto RetryBudget).
	defaultRetryBudgetPercent     = 20
	defaultRetryBudgetConcurrency = 3
)

// clusterTrafficPolicy returns the traffic policy in force for one cluster:
// the rule's policy with its port-level settings for port applied and,
// for a subset cluster, the subset's policy over it (Istio
// util.MergeSubsetTrafficPolicy). The result holds only whole blocks of
// the inputs; it is never written to.
//
// Each block the subset sets replaces the rule's block; when the subset
// has port-level settings for port, its lb, pool, outlier and tls blocks
// all replace the rule's, set or not.
func clusterTrafficPolicy(rule, subset *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	base, _ := portTrafficPolicy(rule, port)
	if subset == nil {
		return base
	}
	sub, subPortLevel := portTrafficPolicy(subset, port)
	if base == nil {
		return sub
	}
	merged := &networking.TrafficPolicy{
		LoadBalancer:     base.LoadBalancer,
		ConnectionPool:   base.ConnectionPool,
		OutlierDetection: base.OutlierDetection,
		Tls:              base.Tls,
		ProxyProtocol:    base.ProxyProtocol,
		RetryBudget:      base.RetryBudget,
	}
	if sub.LoadBalancer != nil || subPortLevel {
		merged.LoadBalancer = sub.LoadBalancer
	}
	if sub.ConnectionPool != nil || subPortLevel {
		merged.ConnectionPool = sub.ConnectionPool
	}
	if sub.OutlierDetection != nil || subPortLevel {
		merged.OutlierDetection = sub.OutlierDetection
	}
	if sub.Tls != nil || subPortLevel {
		merged.Tls = sub.Tls
	}
	if sub.ProxyProtocol != nil {
		merged.ProxyProtocol = sub.ProxyProtocol
	}
	if sub.RetryBudget != nil {
		merged.RetryBudget = sub.RetryBudget
	}
	return merged
}

// portTrafficPolicy applies tp's port-level settings for port, reporting
// whether there were any. Port-level settings replace the whole policy:
// blocks they omit fall back to the defaults, not to tp's, and proxyProtocol
// and retryBudget, which a port cannot set, are dropped (Istio
// GetPortLevelTrafficPolicy).
func portTrafficPolicy(tp *networking.TrafficPolicy, port uint32) (*networking.TrafficPolicy, bool) {
	for _, pls := range tp.GetPortLevelSettings() {
		if pls.GetPort() != nil && pls.GetPort().GetNumber() == port {
			return &networking.TrafficPolicy{
				LoadBalancer:     pls.LoadBalancer,
				ConnectionPool:   pls.ConnectionPool,
				OutlierDetection: pls.OutlierDetection,
				Tls:              pls.Tls,
			}, true
		}
	}
	return tp, false
}

// compilePolicy turns a merged traffic policy into the cluster's Policy
// with Istio's and Envoy's defaults filled in. Tunnel and auto mTLS depend
// on more than the policy and are set by the caller.
func compilePolicy(tp *networking.TrafficPolicy, discovery routing.Discovery) routing.Policy {
	return routing.Policy{
		LoadBalancer:   compileLoadBalancer(tp.GetLoadBalancer(), discovery),
		ConnectionPool: compileConnectionPool(tp.GetConnectionPool()),
		Outlier:        compileOutlier(tp.GetOutlierDetection()),
		TLS:            compileTLS(tp.GetTls()),
		ProxyProtocol:  compileProxyProtocol(tp.GetProxyProtocol()),
		RetryBudget:    compileRetryBudget(tp.GetRetryBudget()),
	}
}

// compileLoadBalancer follows Istio's applyLoadBalancer.
func compileLoadBalancer(lb *networking.LoadBalancerSettings, discovery routing.Discovery) routing.LoadBalancer {
	// An original-destination cluster has one place to send a request,
	// so its balancer is Envoy's CLUSTER_PROVIDED whatever the rule says.
	if discovery == routing.DiscoveryOriginalDst {
		return routing.LoadBalancer{Policy: routing.LBPassthrough}
	}
	out := routing.LoadBalancer{Locality: compileLocality(lb.GetLocalityLbSetting())}
	switch lb.GetSimple() {
	case networking.LoadBalancerSettings_RANDOM:
		out.Policy = routing.LBRandom
	case networking.LoadBalancerSettings_ROUND_ROBIN:
		out.Policy = routing.LBRoundRobin
	default:
		// UNSPECIFIED, LEAST_REQUEST and its deprecated alias LEAST_CONN.
		// (PASSTHROUGH made the cluster original-destination above.)
		out.Policy = routing.LBLeastRequest
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		out.Hash = hashKey(ch)
		switch {
		case ch.GetMaglev() != nil:
			out.Policy = routing.LBMaglev
			out.MaglevTableSize = orDefault(ch.GetMaglev().GetTableSize(), defaultMaglevTableSize)
		case ch.GetRingHash() != nil:
			out.Policy = routing.LBRingHash
			out.MinRingSize = orDefault(ch.GetRingHash().GetMinimumRingSize(), defaultMinRingSize)
		default:
			// No algorithm: Istio emits RING_HASH with the deprecated
			// minimumRingSize, or Envoy's 1024.
			out.Policy = routing.LBRingHash
			out.MinRingSize = orDefault(ch.GetMinimumRingSize(), defaultMinRingSize) // deprecated, still honoured by Istio
		}
	}
	// Envoy slow start exists for round robin and least request only.
	if out.Policy == routing.LBRoundRobin || out.Policy == routing.LBLeastRequest {
		out.Warmup = compileWarmup(lb)
	}
	return out
}

func orDefault(v, def uint64) uint64 {
	if v == 0 {
		return def
	}
	return v
}

// compileWarmup reads warmup, or the deprecated warmupDurationSecs, with
// Envoy's slow-start defaults.
func compileWarmup(lb *networking.LoadBalancerSettings) *routing.Warmup {
	if w := lb.GetWarmup(); w != nil {
		out := &routing.Warmup{
			Duration:   w.GetDuration().AsDuration(),
			MinPercent: defaultWarmupPercent,
			Aggression: defaultWarmupAggr,
		}
		if w.MinimumPercent != nil {
			out.MinPercent = w.MinimumPercent.GetValue()
		}
		if w.Aggression != nil {
			out.Aggression = w.Aggression.GetValue()
		}
		return out
	}
	if d := lb.GetWarmupDurationSecs(); d != nil { // deprecated, still honoured by Istio
		return &routing.Warmup{Duration: d.AsDuration(), MinPercent: defaultWarmupPercent, Aggression: defaultWarmupAggr}
	}
	return nil
}

// compileLocality resolves the locality settings: a rule's
// localityLbSetting replaces the mesh's, which is {enabled: true}
// (Istio loadbalancer.GetLocalityLbSetting); enabled: false turns
// locality-aware balancing off altogether.
func compileLocality(s *networking.LocalityLoadBalancerSetting) *routing.LocalityLB {
	if s == nil {
		return &routing.LocalityLB{Enabled: true}
	}
	if s.Enabled != nil && !s.Enabled.GetValue() {
		return &routing.LocalityLB{Enabled: false}
	}
	out := &routing.LocalityLB{Enabled: true}
	for _, d := range s.Distribute {
		to := make(map[string]uint32, len(d.GetTo()))
		for k, v := range d.GetTo() {
			to[k] = v
		}
		out.Distribute = append(out.Distribute, routing.LocalityDistribute{From: d.GetFrom(), To: to})
	}
	for _, f := range s.Failover {
		out.Failover = append(out.Failover, routing.LocalityFailover{From: f.GetFrom(), To: f.GetTo()})
	}
	out.FailoverPriority = append([]string(nil), s.FailoverPriority...)
	return out
}

// compileConnectionPool follows Istio's applyConnectionPool: every
// circuit-breaker threshold is unlimited unless set above zero (an explicit
// 0 cannot be told from unset), and the connect timeout is the mesh's.
func compileConnectionPool(cp *networking.ConnectionPoolSettings) routing.ConnectionPool {
	out := routing.DefaultConnectionPool()
	if h := cp.GetHttp(); h != nil {
		setPositive(&out.MaxRequests, h.Http2MaxRequests)
		setPositive(&out.MaxPendingRequests, h.Http1MaxPendingRequests)
		setPositive(&out.MaxRetries, h.MaxRetries)
		setPositive(&out.MaxRequestsPerConnection, h.MaxRequestsPerConnection)
		setPositive(&out.MaxConcurrentStreams, h.MaxConcurrentStreams)
		setDuration(&out.IdleTimeout, h.IdleTimeout)
		if h.H2UpgradePolicy != networking.ConnectionPoolSettings_HTTPSettings_DEFAULT {
			out.H2UpgradePolicy = h.H2UpgradePolicy.String()
		}
		out.UseClientProtocol = h.UseClientProtocol
		if ka := h.Http2KeepAlive; ka != nil {
			setDuration(&out.HTTP2KeepaliveInterval, ka.Interval)
			setDuration(&out.HTTP2KeepaliveTimeout, ka.Timeout)
		}
	}
	if t := cp.GetTcp(); t != nil {
		setPositive(&out.MaxConnections, t.MaxConnections)
		setDuration(&out.ConnectTimeout, t.ConnectTimeout)
		setDuration(&out.MaxConnectionDuration, t.MaxConnectionDuration)
		// tcp.idleTimeout times out TCP proxying, and HTTP connections too
		// unless http.idleTimeout is set.
		setDuration(&out.TCPIdleTimeout, t.IdleTimeout)
		if cp.GetHttp().GetIdleTimeout() == nil {
			setDuration(&out.IdleTimeout, t.IdleTimeout)
		}
		if ka := t.TcpKeepalive; ka != nil {
			out.TCPKeepalive = &routing.TCPKeepalive{Probes: ka.Probes}
			setDuration(&out.TCPKeepalive.Time, ka.Time)
			setDuration(&out.TCPKeepalive.Interval, ka.Interval)
		}
	}
	return out
}

func setPositive(dst *uint32, v int32) {
	if v > 0 {
		*dst = uint32(v)
	}
}

func setDuration(dst *time.Duration, d *durationpb.Duration) {
	if d != nil {
		*dst = d.AsDuration()
	}
}

// compileOutlier follows Istio's applyOutlierDetection over Envoy's
// defaults. The deprecated consecutiveErrors is not read: Istio no longer
// translates it (validation warns about it).
func compileOutlier(od *networking.OutlierDetection) *routing.OutlierDetection {
	if od == nil {
		return nil
	}
	out := &routing.OutlierDetection{
		Consecutive5xx:     defaultConsecutive5xx,
		Interval:           defaultOutlierInterval,
		BaseEjectionTime:   defaultBaseEjectionTime,
		MaxEjectionPercent: defaultMaxEjectionPercent,
		// Istio always sets the panic threshold, to minHealthPercent,
		// which defaults to 0: panic mode off (Envoy's default is 50%).
		MinHealthPercent: uint32(max(od.MinHealthPercent, 0)),
	}
	if v := od.Consecutive_5XxErrors; v != nil {
		out.Consecutive5xx = v.GetValue() // 0 disables
	}
	if v := od.ConsecutiveGatewayErrors; v != nil {
		out.ConsecutiveGatewayErrors = v.GetValue()
	}
	if od.SplitExternalLocalOriginErrors {
		out.SplitExternalLocalOriginErrors = true
		out.ConsecutiveLocalOriginFailures = defaultConsecutiveLocalFailure
		if v := od.ConsecutiveLocalOriginFailures.GetValue(); v > 0 {
			out.ConsecutiveLocalOriginFailures = v
		}
	}
	setDuration(&out.Interval, od.Interval)
	setDuration(&out.BaseEjectionTime, od.BaseEjectionTime)
	// Envoy caps the ejection time at max_ejection_time, 300s by default
	// or base_ejection_time if that is larger.
	out.MaxEjectionTime = max(defaultMaxEjectionTime, out.BaseEjectionTime)
	if od.MaxEjectionPercent > 0 {
		out.MaxEjectionPercent = uint32(od.MaxEjectionPercent)
	}
	for _, c := range od.OutlierDetectionHttpErrorCodes {
		out.ErrorCodes = append(out.ErrorCodes, int(c))
	}
	return out
}

// compileTLS copies the client TLS settings. An empty caCertificates means
// the system roots, which is also what an empty CAFile means downstream.
func compileTLS(t *networking.ClientTLSSettings) *routing.ClientTLS {
	if t == nil {
		return nil
	}
	return &routing.ClientTLS{
		Mode:               tlsMode(t.Mode),
		CertFile:           t.ClientCertificate,
		KeyFile:            t.PrivateKey,
		CAFile:             t.CaCertificates,
		CRLFile:            t.CaCrl,
		CredentialName:     t.CredentialName,
		SubjectAltNames:    append([]string(nil), t.SubjectAltNames...),
		SNI:                t.Sni,
		InsecureSkipVerify: t.InsecureSkipVerify.GetValue(),
	}
}

func tlsMode(m networking.ClientTLSSettings_TLSmode) routing.TLSMode {
	switch m {
	case networking.ClientTLSSettings_SIMPLE:
		return routing.TLSSimple
	case networking.ClientTLSSettings_MUTUAL:
		return routing.TLSMutual
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		return routing.TLSIstioMutual
	default:
		return routing.TLSDisable
	}
}

// compileTunnel copies tunnel settings; CONNECT is the default protocol.
func compileTunnel(t *networking.TrafficPolicy_TunnelSettings) *routing.Tunnel {
	if t == nil {
		return nil
	}
	out := &routing.Tunnel{Protocol: t.Protocol, TargetHost: t.TargetHost, TargetPort: t.TargetPort}
	if out.Protocol == "" {
		out.Protocol = "CONNECT"
	}
	return out
}

func compileProxyProtocol(p *networking.TrafficPolicy_ProxyProtocol) string {
	if p == nil {
		return ""
	}
	return p.Version.String()
}

// compileRetryBudget fills the API defaults: 20% of active requests, and
// at least 3 concurrent retries (an explicit 0 cannot be told from unset).
func compileRetryBudget(b *networking.TrafficPolicy_RetryBudget) *routing.RetryBudget {
	if b == nil {
		return nil
	}
	out := &routing.RetryBudget{Percent: defaultRetryBudgetPercent, MinRetryConcurrency: b.MinRetryConcurrency}
	if b.Percent != nil {
		out.Percent = b.Percent.GetValue()
	}
	if out.MinRetryConcurrency == 0 {
		out.MinRetryConcurrency = defaultRetryBudgetConcurrency
	}
	return out
}
