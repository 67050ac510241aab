package config

import (
	"errors"
	"math"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// destinationRule checks a DestinationRule (Istio ValidateDestinationRule).
func (v *validator) destinationRule(dr *networking.DestinationRule) {
	switch {
	case dr.Host == "":
		v.errorf("spec.host", "required: the service this rule applies to")
	default:
		if err := checkWildcardHost(dr.Host); err != nil {
			v.errorf("spec.host", "invalid host %q: %v", dr.Host, err)
		}
	}
	hasSelector := dr.WorkloadSelector != nil
	v.trafficPolicy("spec.trafficPolicy", dr.TrafficPolicy, hasSelector)

	seen := map[string]int{}
	for i, s := range dr.Subsets {
		p := index("spec.subsets", i)
		switch {
		case s.Name == "":
			v.errorf(p+".name", "required: routes refer to the subset by name")
		case !isDNS1123Label(s.Name):
			v.errorf(p+".name", "invalid subset name %q: %s", s.Name, dns1123LabelRule)
		}
		if j, dup := seen[s.Name]; dup && s.Name != "" {
			v.errorf(p+".name", "duplicate subset name %q (first at spec.subsets[%d]); Istio keeps only the first", s.Name, j)
		} else {
			seen[s.Name] = i
		}
		v.labels(p+".labels", s.Labels)
		v.trafficPolicy(p+".trafficPolicy", s.TrafficPolicy, hasSelector)
	}

	v.exportTo("spec.exportTo", dr.ExportTo, false)
	if hasSelector {
		v.selector("spec.workloadSelector.matchLabels", dr.WorkloadSelector.GetMatchLabels(), true)
		// A rule for selected workloads only makes sense where those
		// workloads are (Istio validateExportTo).
		for i, e := range dr.ExportTo {
			if e != "." && e != v.res.Namespace {
				v.errorf(index("spec.exportTo", i), "a DestinationRule with a workloadSelector can only be exported to its own namespace (\".\"), found %q", e)
			}
		}
	}
}

// trafficPolicy checks a DestinationRule or subset traffic policy (Istio
// validateTrafficPolicy).
func (v *validator) trafficPolicy(p string, tp *networking.TrafficPolicy, hasSelector bool) {
	if tp == nil {
		return
	}
	if tp.LoadBalancer == nil && tp.ConnectionPool == nil && tp.OutlierDetection == nil && tp.Tls == nil &&
		len(tp.PortLevelSettings) == 0 && tp.Tunnel == nil && tp.ProxyProtocol == nil && tp.RetryBudget == nil {
		v.errorf(p, "an empty trafficPolicy does nothing: set loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings or retryBudget, or remove it")
	}
	v.loadBalancer(p+".loadBalancer", tp.LoadBalancer, tp.OutlierDetection)
	v.connectionPool(p+".connectionPool", tp.ConnectionPool)
	v.outlierDetection(p+".outlierDetection", tp.OutlierDetection)
	v.clientTLS(p+".tls", tp.Tls, hasSelector)
	v.portLevelSettings(p+".portLevelSettings", tp.PortLevelSettings, hasSelector)
	if tp.Tunnel != nil {
		v.tunnel(p+".tunnel", tp.Tunnel)
		if tp.ProxyProtocol != nil {
			v.errorf(p+".proxyProtocol", "cannot be combined with tunnel")
		}
	}
	if tp.ProxyProtocol != nil {
		// Validated for syntax by the decoder (version is an enum); michi
		// has no PROXY protocol writer.
		v.errorf(p+".proxyProtocol", "proxyProtocol is not supported by michi")
	}
	if rb := tp.RetryBudget; rb != nil {
		if rb.Percent != nil {
			v.percentValue(p+".retryBudget.percent", rb.Percent.GetValue())
		}
		v.nonNegativeDuration(p+".retryBudget.budgetInterval", rb.BudgetInterval)
	}
}

// tunnel checks tunnel settings, which michi does not implement.
func (v *validator) tunnel(p string, t *networking.TrafficPolicy_TunnelSettings) {
	v.errorf(p, "tunnel is not supported by michi")
	if t.Protocol != "" && t.Protocol != "CONNECT" && t.Protocol != "POST" {
		v.errorf(p+".protocol", `must be "CONNECT" or "POST", found %q`, t.Protocol)
	}
	if t.TargetHost == "" {
		v.errorf(p+".targetHost", "required: the host to open the tunnel to")
	} else if checkFQDN(t.TargetHost) != nil && !isIP(t.TargetHost) {
		v.errorf(p+".targetHost", "invalid target host %q: must be a host name or an IP address", t.TargetHost)
	}
	if t.TargetPort == 0 {
		v.errorf(p+".targetPort", "required: the port to open the tunnel to")
	} else {
		v.port(p+".targetPort", t.TargetPort)
	}
}

// maxPortLevelSettings is the API's limit on portLevelSettings.
const maxPortLevelSettings = 4096

func (v *validator) portLevelSettings(p string, pls []*networking.TrafficPolicy_PortTrafficPolicy, hasSelector bool) {
	if len(pls) > maxPortLevelSettings {
		v.errorf(p, "%d entries is too many: at most %d", len(pls), maxPortLevelSettings)
	}
	seen := map[uint32]int{}
	for i, s := range pls {
		sp := index(p, i)
		if s.Port == nil {
			v.errorf(sp+".port", "required: the service port these settings apply to")
		} else {
			n := s.Port.GetNumber()
			v.port(sp+".port.number", n)
			if j, dup := seen[n]; dup {
				v.errorf(sp+".port.number", "duplicate port %d (first at %s)", n, index(p, j))
			} else {
				seen[n] = i
			}
		}
		if s.LoadBalancer == nil && s.ConnectionPool == nil && s.OutlierDetection == nil && s.Tls == nil {
			v.errorf(sp, "port-level settings must set at least one of loadBalancer, connectionPool, outlierDetection or tls")
		}
		v.loadBalancer(sp+".loadBalancer", s.LoadBalancer, s.OutlierDetection)
		v.connectionPool(sp+".connectionPool", s.ConnectionPool)
		v.outlierDetection(sp+".outlierDetection", s.OutlierDetection)
		v.clientTLS(sp+".tls", s.Tls, hasSelector)
	}
}

// Envoy's limits for hash-based load balancing (cluster.proto RingHashLbConfig,
// MaglevLbConfig).
const (
	maxRingSize      = 8 << 20
	maglevTableLimit = 5000011
)

// loadBalancer checks load-balancer settings (Istio validateLoadBalancer).
// outlier is the outlier detection at the same level, which locality
// failover depends on.
func (v *validator) loadBalancer(p string, lb *networking.LoadBalancerSettings, outlier *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	if lb.GetSimple() == networking.LoadBalancerSettings_LEAST_CONN {
		v.warnf(p+".simple", "LEAST_CONN is deprecated; it is an alias of LEAST_REQUEST")
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		v.consistentHash(p+".consistentHash", ch)
	}
	if lb.LocalityLbSetting != nil && lb.ZoneAwareLbSetting != nil {
		v.errorf(p+".zoneAwareLbSetting", "cannot be combined with localityLbSetting")
	}
	v.localityLB(p+".localityLbSetting", lb.LocalityLbSetting, outlier)
	if za := lb.ZoneAwareLbSetting; za != nil {
		zp := p + ".zoneAwareLbSetting"
		if za.MinClusterSize != nil && za.MinClusterSize.GetValue() < 1 {
			v.errorf(zp+".minClusterSize", "must be at least 1")
		}
		for i, f := range za.Failover {
			v.failover(index(zp+".failover", i), f.From, f.To)
		}
		v.failoverPriority(zp+".failoverPriority", za.FailoverPriority)
	}
	if lb.WarmupDurationSecs != nil {
		if lb.Warmup != nil {
			v.errorf(p+".warmupDurationSecs", "cannot be combined with warmup; use warmup.duration")
		} else {
			v.warnf(p+".warmupDurationSecs", "deprecated; use warmup.duration")
		}
		v.duration(p+".warmupDurationSecs", lb.WarmupDurationSecs)
	}
	if w := lb.Warmup; w != nil {
		wp := p + ".warmup"
		if w.Duration == nil {
			v.errorf(wp+".duration", "required: how long a new endpoint ramps up")
		}
		v.duration(wp+".duration", w.Duration)
		if w.MinimumPercent != nil {
			v.percentValue(wp+".minimumPercent", w.MinimumPercent.GetValue())
		}
		if w.Aggression != nil && w.Aggression.GetValue() < 1 {
			v.errorf(wp+".aggression", "must be at least 1, found %s", formatFloat(w.Aggression.GetValue()))
		}
	}
	if lb.Warmup != nil || lb.WarmupDurationSecs != nil {
		// Envoy slow start exists only for round robin and least request.
		switch {
		case lb.GetConsistentHash() != nil:
			v.warnf(p+".consistentHash", "warmup has no effect with consistentHash; it applies to ROUND_ROBIN and LEAST_REQUEST only")
		case lb.GetSimple() == networking.LoadBalancerSettings_RANDOM, lb.GetSimple() == networking.LoadBalancerSettings_PASSTHROUGH:
			v.warnf(p+".simple", "warmup has no effect with %s; it applies to ROUND_ROBIN and LEAST_REQUEST only", lb.GetSimple())
		}
	}
}

func (v *validator) consistentHash(p string, ch *networking.LoadBalancerSettings_ConsistentHashLB) {
	switch k := ch.HashKey.(type) {
	case nil:
		v.errorf(p, "needs a hash key: set httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		if !isHeaderToken(k.HttpHeaderName) {
			v.errorf(p+".httpHeaderName", "invalid header name %q: must be an RFC 7230 token", k.HttpHeaderName)
		}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		cp := p + ".httpCookie"
		if k.HttpCookie.GetName() == "" {
			v.errorf(cp+".name", "required: the cookie to hash on")
		}
		v.nonNegativeDuration(cp+".ttl", k.HttpCookie.GetTtl())
		for i, a := range k.HttpCookie.GetAttributes() {
			if a.Name == "" {
				v.errorf(index(cp+".attributes", i)+".name", "required")
			}
		}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		if !k.UseSourceIp {
			v.errorf(p+".useSourceIp", "false hashes on nothing: set it to true, or choose another hash key")
		}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		if k.HttpQueryParameterName == "" {
			v.errorf(p+".httpQueryParameterName", "must not be empty")
		}
	}
	if ch.MinimumRingSize != 0 {
		if ch.HashAlgorithm != nil {
			v.errorf(p+".minimumRingSize", "cannot be combined with ringHash or maglev; use ringHash.minimumRingSize")
		} else {
			v.warnf(p+".minimumRingSize", "deprecated; use ringHash.minimumRingSize")
		}
	}
	switch a := ch.HashAlgorithm.(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_RingHash_:
		if n := a.RingHash.GetMinimumRingSize(); n > maxRingSize {
			v.errorf(p+".ringHash.minimumRingSize", "must be at most %d (Envoy's limit), found %d", maxRingSize, n)
		}
	case *networking.LoadBalancerSettings_ConsistentHashLB_Maglev:
		n := a.Maglev.GetTableSize()
		mp := p + ".maglev.tableSize"
		switch {
		case n == 0:
			// The API documents a default of 65537, but Istio rejects 0.
			v.errorf(mp, "required: a prime number below %d, such as 65537", maglevTableLimit)
		case n >= maglevTableLimit:
			v.errorf(mp, "must be below %d, found %d", maglevTableLimit, n)
		case !isPrime(n):
			v.errorf(mp, "must be a prime number, such as 65537; found %d", n)
		}
	}
}

// isPrime is trial division, which is plenty for table sizes below 5M.
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	limit := uint64(math.Sqrt(float64(n)))
	for f := uint64(3); f <= limit; f += 2 {
		if n%f == 0 {
			return false
		}
	}
	return true
}

// localityLB checks locality load-balancer settings (Istio
// agent.ValidateLocalityLbSetting).
func (v *validator) localityLB(p string, l *networking.LocalityLoadBalancerSetting, outlier *networking.OutlierDetection) {
	if l == nil {
		return
	}
	var set []string
	if len(l.Distribute) > 0 {
		set = append(set, "distribute")
	}
	if len(l.Failover) > 0 {
		set = append(set, "failover")
	}
	if len(l.FailoverPriority) > 0 {
		set = append(set, "failoverPriority")
	}
	if len(set) > 1 {
		v.errorf(p+"."+set[1], "cannot be combined with %s: set only one of distribute, failover or failoverPriority", set[0])
	}
	froms := map[string]int{}
	for i, d := range l.Distribute {
		dp := index(p+".distribute", i)
		if err := checkLocality(d.From); err != nil {
			v.errorf(dp+".from", "invalid locality %q: %v", d.From, err)
		} else if j, dup := froms[d.From]; dup {
			v.errorf(dp+".from", "duplicate locality %q (first at distribute[%d])", d.From, j)
		} else {
			froms[d.From] = i
		}
		var total uint64
		for _, loc := range sortedKeys(d.To) {
			w := d.To[loc]
			tp := mapKey(dp+".to", loc)
			if err := checkLocality(loc); err != nil {
				v.errorf(tp, "invalid locality %q: %v", loc, err)
			}
			if w < 1 || w > 100 {
				v.errorf(tp, "weight must be between 1 and 100, found %d", w)
			}
			total += uint64(w)
		}
		if total != 100 {
			v.errorf(dp+".to", "weights add up to %d: they must add up to 100", total)
		}
	}
	for i, f := range l.Failover {
		v.failover(index(p+".failover", i), f.From, f.To)
	}
	v.failoverPriority(p+".failoverPriority", l.FailoverPriority)
	if outlier == nil {
		// Envoy moves traffic to another locality only when it considers
		// local endpoints unhealthy, which needs outlier detection
		// (loadbalancer.go applyLocalityFailover).
		if len(l.Failover) > 0 {
			v.warnf(p+".failover", "has no effect without outlierDetection: failover happens only when endpoints are ejected")
		}
		if len(l.FailoverPriority) > 0 {
			v.warnf(p+".failoverPriority", "has no effect without outlierDetection: failover happens only when endpoints are ejected")
		}
	}
}

// checkLocality checks "region", "region/zone", "region/zone/subzone",
// where the last part may be "*".
func checkLocality(l string) error {
	parts := strings.Split(l, "/")
	if len(parts) > 3 {
		return errors.New("must be region, region/zone or region/zone/subzone")
	}
	for i, part := range parts {
		switch {
		case part == "":
			return errors.New("region, zone and subzone must not be empty")
		case part == "*" && i != len(parts)-1:
			return errors.New(`"*" may only be the last part`)
		case part != "*" && strings.Contains(part, "*"):
			return errors.New(`"*" must be a whole part, as in "us-east/*"`)
		}
	}
	return nil
}

func (v *validator) failover(p, from, to string) {
	for _, f := range []struct{ name, val string }{{"from", from}, {"to", to}} {
		switch {
		case f.val == "":
			v.errorf(p+"."+f.name, "required: a region")
		case strings.Contains(f.val, "/"):
			v.errorf(p+"."+f.name, "failover is between regions: %q names a zone", f.val)
		case strings.Contains(f.val, "*"):
			v.errorf(p+"."+f.name, "must name a region, not a wildcard")
		}
	}
	if from != "" && from == to {
		v.errorf(p+".to", "must differ from from (%q)", from)
	}
}

func (v *validator) failoverPriority(p string, labels []string) {
	for i, l := range labels {
		lp := index(p, i)
		key, val, hasVal := strings.Cut(l, "=")
		if err := checkLabelKey(key); err != nil {
			v.errorf(lp, "invalid label %q: %v", l, err)
			continue
		}
		if hasVal {
			if err := checkLabelValue(val); err != nil {
				v.errorf(lp, "invalid label value in %q: %v", l, err)
			}
		}
	}
}

// connectionPool checks circuit-breaker settings (Istio
// validateConnectionPool). Istio cannot tell an explicit 0 from unset, so 0
// means "Istio's default" (unlimited); negative values are errors.
func (v *validator) connectionPool(p string, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.Tcp == nil && cp.Http == nil {
		v.errorf(p, "an empty connectionPool does nothing: set tcp or http, or remove it")
	}
	if t := cp.Tcp; t != nil {
		tp := p + ".tcp"
		v.nonNegative(tp+".maxConnections", t.MaxConnections)
		v.duration(tp+".connectTimeout", t.ConnectTimeout)
		v.duration(tp+".maxConnectionDuration", t.MaxConnectionDuration)
		if t.IdleTimeout.AsDuration() != 0 { // 0s disables the idle timeout
			v.duration(tp+".idleTimeout", t.IdleTimeout)
		}
		if ka := t.TcpKeepalive; ka != nil {
			v.duration(tp+".tcpKeepalive.time", ka.Time)
			v.duration(tp+".tcpKeepalive.interval", ka.Interval)
		}
	}
	if h := cp.Http; h != nil {
		hp := p + ".http"
		v.nonNegative(hp+".http1MaxPendingRequests", h.Http1MaxPendingRequests)
		v.nonNegative(hp+".http2MaxRequests", h.Http2MaxRequests)
		v.nonNegative(hp+".maxRequestsPerConnection", h.MaxRequestsPerConnection)
		v.nonNegative(hp+".maxRetries", h.MaxRetries)
		v.nonNegative(hp+".maxConcurrentStreams", h.MaxConcurrentStreams)
		v.duration(hp+".idleTimeout", h.IdleTimeout)
		if h.UseClientProtocol && h.H2UpgradePolicy == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE {
			v.errorf(hp+".useClientProtocol", "cannot be true when h2UpgradePolicy is UPGRADE: the client's protocol is kept, so nothing is upgraded")
		}
		if ka := h.Http2KeepAlive; ka != nil {
			kp := hp + ".http2KeepAlive"
			if ka.Interval == nil {
				v.errorf(kp+".interval", "required: how often to send HTTP/2 PINGs")
			}
			if ka.Timeout == nil {
				v.errorf(kp+".timeout", "required: how long to wait for a PING reply")
			}
			v.duration(kp+".interval", ka.Interval)
			v.duration(kp+".timeout", ka.Timeout)
		}
	}
}

func (v *validator) nonNegative(p string, n int32) {
	if n < 0 {
		v.errorf(p, "must not be negative, found %d", n)
	}
}

// outlierDetection checks outlier detection (Istio validateOutlierDetection).
func (v *validator) outlierDetection(p string, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	if od.ConsecutiveErrors != 0 {
		v.warnf(p+".consecutiveErrors", "deprecated; use consecutive5xxErrors or consecutiveGatewayErrors")
	}
	if od.ConsecutiveLocalOriginFailures.GetValue() > 0 && !od.SplitExternalLocalOriginErrors {
		v.errorf(p+".consecutiveLocalOriginFailures", "needs splitExternalLocalOriginErrors: true; without it local-origin failures count as 5xx errors")
	}
	if gw, x := od.ConsecutiveGatewayErrors.GetValue(), od.Consecutive_5XxErrors; gw > 0 && x != nil && x.GetValue() > 0 && gw >= x.GetValue() {
		// Gateway errors (502/503/504) are 5xx too, so the 5xx detector
		// always trips first (outlier_detection.proto).
		v.warnf(p+".consecutiveGatewayErrors", "has no effect: %d is not below consecutive5xxErrors (%d), which also counts 502, 503 and 504 and ejects first", gw, x.GetValue())
	}
	v.duration(p+".interval", od.Interval)
	v.duration(p+".baseEjectionTime", od.BaseEjectionTime)
	if n := od.MaxEjectionPercent; n < 0 || n > 100 {
		v.errorf(p+".maxEjectionPercent", "must be between 0 and 100, found %d", n)
	}
	if n := od.MinHealthPercent; n < 0 || n > 100 {
		v.errorf(p+".minHealthPercent", "must be between 0 and 100, found %d", n)
	}
	for i, c := range od.OutlierDetectionHttpErrorCodes {
		if c < 100 || c > 599 {
			v.errorf(index(p+".outlierDetectionHttpErrorCodes", i), "must be an HTTP status between 100 and 599, found %d", c)
		}
	}
}

// clientTLS checks the TLS a proxy originates to the upstream (Istio
// agent.ValidateTLS and the cluster builder's use of each mode).
func (v *validator) clientTLS(p string, t *networking.ClientTLSSettings, hasSelector bool) {
	if t == nil {
		return
	}
	files := []struct{ name, val string }{
		{"clientCertificate", t.ClientCertificate},
		{"privateKey", t.PrivateKey},
		{"caCertificates", t.CaCertificates},
		{"caCrl", t.CaCrl},
	}
	switch t.Mode {
	case networking.ClientTLSSettings_DISABLE:
		for _, f := range append(files, struct{ name, val string }{"credentialName", t.CredentialName}, struct{ name, val string }{"sni", t.Sni}) {
			if f.val != "" {
				v.warnf(p+"."+f.name, "ignored: mode is DISABLE, so no TLS is originated")
			}
		}
		return
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		for _, f := range append(files, struct{ name, val string }{"credentialName", t.CredentialName}) {
			if f.val != "" {
				v.warnf(p+"."+f.name, "ignored: ISTIO_MUTUAL uses the mesh's own certificates")
			}
		}
		return
	}
	if t.CredentialName != "" {
		for _, f := range files {
			if f.val != "" {
				v.errorf(p+"."+f.name, "cannot be combined with credentialName, which already holds the certificates")
			}
		}
		if !hasSelector {
			v.warnf(p+".credentialName", "only gateways use credentialName; sidecars ignore it unless the DestinationRule has a workloadSelector")
		}
	} else if t.Mode == networking.ClientTLSSettings_MUTUAL {
		if t.ClientCertificate == "" {
			v.errorf(p+".clientCertificate", "required for MUTUAL: the certificate presented to the server (or set credentialName)")
		}
		if t.PrivateKey == "" {
			v.errorf(p+".privateKey", "required for MUTUAL: the key of clientCertificate (or set credentialName)")
		}
	}
	if t.Mode == networking.ClientTLSSettings_SIMPLE {
		for _, f := range files[:2] {
			if f.val != "" {
				v.warnf(p+"."+f.name, "ignored: SIMPLE TLS presents no client certificate; use mode MUTUAL")
			}
		}
	}
	if t.GetInsecureSkipVerify().GetValue() {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"caCertificates", t.CaCertificates != ""},
			{"subjectAltNames", len(t.SubjectAltNames) > 0},
			{"credentialName", t.CredentialName != "" && t.Mode == networking.ClientTLSSettings_SIMPLE},
		} {
			if f.set {
				v.errorf(p+"."+f.name, "cannot be combined with insecureSkipVerify: true, which skips server certificate verification")
			}
		}
	}
	for i, s := range t.SubjectAltNames {
		if s == "" {
			v.errorf(index(p+".subjectAltNames", i), "must not be empty")
		}
	}
}
