package dataplane

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// InboundTable is the routing table of a sidecar's inbound side: every
// request, whatever its host and port, goes to the local application at
// target, as Istio's inbound listener forwards to the workload. Retries
// follow Istio's inbound default (1.24+): two retries on
// reset-before-request only, so a request the application has seen is
// never replayed.
func InboundTable(target string) (*routing.Table, error) {
	_, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, errors.New("inbound target port: " + err.Error())
	}
	name := "inbound|" + portStr + "||"
	pool := routing.DefaultConnectionPool()
	pool.UseClientProtocol = true // the application speaks what the client spoke
	cluster := &routing.Cluster{
		Name:      name,
		Port:      uint32(port),
		Protocol:  "HTTP",
		Discovery: routing.DiscoveryStatic,
		Endpoints: []routing.Endpoint{{Address: target, Weight: 1}},
		Policy: routing.Policy{
			LoadBalancer:   routing.LoadBalancer{Policy: routing.LBLeastRequest},
			ConnectionPool: pool,
		},
	}
	route := &routing.Route{
		Name:       "default",
		MatchIndex: -1,
		Match:      routing.Match{PathKind: routing.PathAny},
		Forward: &routing.Forward{
			Destinations: []*routing.Destination{{Cluster: name, Port: uint32(port), Weight: 100}},
			TotalWeight:  100,
		},
		Retry: &routing.RetryPolicy{
			NumRetries:  2,
			RetryOn:     routing.RetryResetBeforeRequest,
			BackoffBase: 25 * time.Millisecond,
			BackoffMax:  250 * time.Millisecond,
		},
	}
	vh := routing.NewVirtualHost("inbound|http|"+portStr, []string{"*"}, "", []*routing.Route{route})
	return &routing.Table{
		Version:  "inbound",
		HTTP:     map[uint32]*routing.RouteConfig{},
		Default:  routing.NewRouteConfig(uint32(port), []*routing.VirtualHost{vh}),
		Clusters: map[string]*routing.Cluster{name: cluster},
	}, nil
}

// ServeTLS serves HTTP/1.1 and HTTP/2 over TLS on ln with cfg, such as
// the mesh mutual-TLS configuration of an inbound listener.
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	hs := s.httpServer()
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	hs.Protocols = &protocols
	hs.TLSConfig = cfg.Clone()
	s.mu.Lock()
	s.servers = append(s.servers, hs)
	s.mu.Unlock()
	err := hs.Serve(tls.NewListener(ln, hs.TLSConfig))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
