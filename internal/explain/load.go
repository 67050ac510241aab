package explain

import (
	"log/slog"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/engine"
	"github.com/michi-mesh/michi/internal/routing"
)

// Config is the configuration to explain against and the proxy identity
// to compile it for, as `michi run` takes them.
type Config struct {
	// Paths are the configuration files and directories (-c).
	Paths []string
	// Namespace is the proxy's namespace; it is also given to resources
	// without metadata.namespace.
	Namespace string
	// Labels are the proxy's workload labels (sourceLabels, gateway
	// selectors).
	Labels map[string]string
	// Gateways, when set, make the proxy a gateway implementing these
	// Gateways ("ns/name"); otherwise it is a sidecar.
	Gateways []string
	// OutboundPolicy is Istio's outboundTrafficPolicy.mode; empty means
	// ALLOW_ANY.
	OutboundPolicy routing.OutboundPolicy
	// ClusterDomain is the Kubernetes DNS domain; empty means
	// cluster.local.
	ClusterDomain string
}

// Load reads, validates and compiles the configuration exactly as `michi
// run` does: the same loader, then the engine's Apply (validation, the
// registry, compile and the cross-resource analysis), which rejects a
// configuration with any error. It returns the table and the findings
// that are not errors (warnings worth showing next to an explanation); a
// rejected configuration returns an *engine.RejectedError with every
// finding.
func Load(c Config) (*routing.Table, config.Diagnostics, error) {
	set, diags := config.Load(c.Paths, config.LoadOptions{DefaultNamespace: c.Namespace})
	proxy := routing.Proxy{Role: routing.RoleMesh, Namespace: c.Namespace, Labels: c.Labels}
	if len(c.Gateways) > 0 {
		proxy.Role, proxy.Gateways = routing.RoleGateway, c.Gateways
	}
	eng := engine.New(engine.Options{
		Compile: compile.Options{
			Proxy:          proxy,
			ClusterDomain:  c.ClusterDomain,
			OutboundPolicy: c.OutboundPolicy,
		},
		ClusterDomain: c.ClusterDomain,
		// The engine logs every finding; Load returns them instead.
		Logger: slog.New(slog.DiscardHandler),
	})
	if err := eng.Apply(set, diags); err != nil {
		return nil, nil, err
	}
	st := eng.Status()
	return st.Table, st.Diagnostics, nil
}
