package explain

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/michi-mesh/michi/internal/routing"
)

// policy describes a cluster's merged traffic policy in Envoy's terms.
// sni is the host the request carries upstream, which auto SNI sends.
func policy(c *routing.Cluster, sni string) *Policy {
	p := &c.Policy
	out := &Policy{
		LoadBalancer:     loadBalancer(p),
		ConnectionPool:   connectionPool(&p.ConnectionPool),
		OutlierDetection: outlier(p.Outlier),
		TLS:              clientTLS(c, sni),
		ProxyProtocol:    p.ProxyProtocol,
	}
	if t := p.Tunnel; t != nil {
		out.Tunnel = fmt.Sprintf("%s to %s:%d", t.Protocol, t.TargetHost, t.TargetPort)
	}
	if b := p.RetryBudget; b != nil {
		out.RetryBudget = fmt.Sprintf("%g%% of active requests, at least %d concurrent retries", b.Percent, b.MinRetryConcurrency)
	}
	return out
}

func loadBalancer(p *routing.Policy) LoadBalancer {
	lb := &p.LoadBalancer
	out := LoadBalancer{
		Algorithm:       string(lb.Policy),
		HashOn:          hashSource(lb.Hash),
		MinRingSize:     lb.MinRingSize,
		MaglevTableSize: lb.MaglevTableSize,
		Locality:        locality(lb.Locality, p.Outlier != nil),
	}
	if out.Algorithm == "" {
		out.Algorithm = string(routing.LBLeastRequest) // Istio's default
	}
	if w := lb.Warmup; w != nil {
		out.Warmup = fmt.Sprintf("new endpoints ramp up over %s from %g%% (aggression %g)", w.Duration, w.MinPercent, w.Aggression)
	}
	return out
}

// locality describes Istio's locality load balancing for the cluster.
// Failover, by proximity or as configured, only takes effect with outlier
// detection, since without ejections Envoy never leaves priority 0
// (istio loadbalancer.go applyLocalityFailover); distribute always does.
func locality(l *routing.LocalityLB, hasOutlier bool) string {
	failover := func(what string) string {
		if hasOutlier {
			return what + " (active: the cluster has outlier detection)"
		}
		return what + " (inactive: Istio applies failover only with outlier detection)"
	}
	switch {
	case l == nil:
		return failover("mesh default: failover by proximity to the proxy's locality")
	case !l.Enabled:
		return "disabled"
	case len(l.Distribute) > 0:
		var parts []string
		for _, d := range l.Distribute {
			parts = append(parts, d.From+" → "+weights(d.To))
		}
		return "distribute " + strings.Join(parts, "; ")
	case len(l.Failover) > 0:
		var parts []string
		for _, f := range l.Failover {
			parts = append(parts, f.From+" → "+f.To)
		}
		return failover("failover " + strings.Join(parts, ", "))
	case len(l.FailoverPriority) > 0:
		return failover("failoverPriority " + strings.Join(l.FailoverPriority, ", "))
	}
	return failover("failover by proximity to the proxy's locality")
}

func weights(m map[string]uint32) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d%%", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func connectionPool(cp *routing.ConnectionPool) ConnectionPool {
	out := ConnectionPool{
		MaxConnections:           limit(cp.MaxConnections),
		MaxPendingRequests:       limit(cp.MaxPendingRequests),
		MaxRequests:              limit(cp.MaxRequests),
		MaxRetries:               limit(cp.MaxRetries),
		ConnectTimeout:           duration(cp.ConnectTimeout),
		MaxRequestsPerConnection: "unlimited",
		MaxConnectionDuration:    duration(cp.MaxConnectionDuration),
		IdleTimeout:              duration(cp.IdleTimeout),
		H2UpgradePolicy:          cp.H2UpgradePolicy,
		UseClientProtocol:        cp.UseClientProtocol,
	}
	if cp.MaxRequestsPerConnection > 0 {
		out.MaxRequestsPerConnection = strconv.FormatUint(uint64(cp.MaxRequestsPerConnection), 10)
	}
	return out
}

// limit renders a circuit-breaker threshold; Istio sets 2^32-1 for every
// threshold it is not told, which is unlimited in practice.
func limit(v uint32) string {
	if v == routing.Unlimited {
		return "unlimited"
	}
	return strconv.FormatUint(uint64(v), 10)
}

func outlier(o *routing.OutlierDetection) *OutlierDetection {
	if o == nil {
		return nil
	}
	return &OutlierDetection{
		Consecutive5xx:                 o.Consecutive5xx,
		ConsecutiveGatewayErrors:       o.ConsecutiveGatewayErrors,
		ConsecutiveLocalOriginFailures: o.ConsecutiveLocalOriginFailures,
		SplitExternalLocalOriginErrors: o.SplitExternalLocalOriginErrors,
		Interval:                       duration(o.Interval),
		BaseEjectionTime:               duration(o.BaseEjectionTime),
		MaxEjectionTime:                duration(o.MaxEjectionTime),
		MaxEjectionPercent:             o.MaxEjectionPercent,
		MinHealthPercent:               o.MinHealthPercent,
		ErrorCodes:                     o.ErrorCodes,
	}
}

// clientTLS describes TLS origination towards c the way the upstream
// package sets it up: the DestinationRule's SANs, else the
// ServiceEntry's; SIMPLE and MUTUAL send the request's host as SNI unless
// one is configured (Envoy auto_sni) and, without SANs, check the
// certificate against it (auto_san_validation); ISTIO_MUTUAL sends Istio's
// outbound_.port_.subset_.host SNI and checks the endpoints' identities.
// It is nil for a plaintext cluster.
func clientTLS(c *routing.Cluster, requestHost string) *TLS {
	t := c.Policy.TLS
	if t == nil {
		return nil
	}
	out := &TLS{
		Mode:               string(t.Mode),
		Auto:               t.Auto,
		SNI:                t.SNI,
		CACertificates:     t.CAFile,
		ClientCertificate:  t.CertFile,
		CredentialName:     t.CredentialName,
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	sans := t.SubjectAltNames
	sanSource := "DestinationRule"
	if len(sans) == 0 && len(c.SubjectAltNames) > 0 {
		sans, sanSource = c.SubjectAltNames, "ServiceEntry"
	}
	switch t.Mode {
	case routing.TLSDisable:
		out.Verify = "none: plaintext"
		return out
	case routing.TLSIstioMutual:
		if out.SNI == "" {
			out.SNI = "outbound_." + strconv.FormatUint(uint64(c.Port), 10) + "_." + c.Subset + "_." + c.Host
		}
		if len(sans) > 0 {
			out.Verify = "mesh certificate with one of the " + sanSource + " subjectAltNames " + strings.Join(sans, ", ")
		} else {
			out.Verify = "mesh certificate with the SPIFFE identity of an endpoint's service account"
		}
		return out
	}
	if out.SNI == "" {
		out.SNI, out.AutoSNI = requestHost, true
	}
	roots := "the system roots"
	if t.CAFile != "" {
		roots = t.CAFile
	}
	switch {
	case t.InsecureSkipVerify:
		out.Verify = "not verified (insecureSkipVerify)"
	case len(sans) > 0:
		out.Verify = "signed by " + roots + ", with one of the " + sanSource + " subjectAltNames " + strings.Join(sans, ", ")
	default:
		out.Verify = "signed by " + roots + ", valid for " + out.SNI
	}
	return out
}

func retries(p *routing.RetryPolicy) *Retries {
	if p == nil {
		return nil
	}
	on, _ := p.RetryOn.MarshalText()
	out := &Retries{
		Attempts:              p.NumRetries,
		RetryOn:               []string{},
		RetriableStatusCodes:  p.RetriableStatusCodes,
		PerTryTimeout:         duration(p.PerTryTimeout),
		BackoffBase:           duration(p.BackoffBase),
		BackoffMax:            duration(p.BackoffMax),
		RetryOtherHosts:       p.RetryOtherHosts,
		HostSelectionAttempts: p.HostSelectionAttempts,
		RetryRemoteLocalities: p.RetryRemoteLocalities,
		IstioDefault:          p.Default,
	}
	if len(on) > 0 {
		out.RetryOn = strings.Split(string(on), ",")
	}
	return out
}

func fault(f *routing.Fault) *Fault {
	if f == nil {
		return nil
	}
	out := &Fault{}
	if d := f.Delay; d != nil {
		out.Delay = &FaultDelay{Duration: duration(d.Duration), Percent: perMillion(d.PerMillion)}
	}
	if a := f.Abort; a != nil {
		out.Abort = &FaultAbort{Percent: perMillion(a.PerMillion)}
		if a.IsGRPC {
			code := a.GRPCStatus
			out.Abort.GRPCStatus = &code
		} else {
			out.Abort.HTTPStatus = a.HTTPStatus
		}
	}
	return out
}

func headers(h *routing.HeaderOps) *Headers {
	if h.IsZero() {
		return nil
	}
	conv := func(hs []routing.Header) []Header {
		var out []Header
		for _, x := range hs {
			out = append(out, Header{Name: x.Name, Value: x.Value})
		}
		return out
	}
	return &Headers{
		RequestSet:     conv(h.RequestSet),
		RequestAdd:     conv(h.RequestAdd),
		RequestRemove:  h.RequestRemove,
		ResponseSet:    conv(h.ResponseSet),
		ResponseAdd:    conv(h.ResponseAdd),
		ResponseRemove: h.ResponseRemove,
		HostRewrite:    h.HostRewrite,
	}
}

func rewrite(r *routing.Rewrite) *Rewrite {
	if r == nil {
		return nil
	}
	out := &Rewrite{Authority: r.Authority}
	if r.HasURIPrefix {
		p := r.URIPrefix
		out.URIPrefix = &p
	}
	if r.Regex != nil {
		out.RegexMatch, out.RegexRewrite = r.Regex.Pattern, r.Regex.Substitution
	}
	return out
}
