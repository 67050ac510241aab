// Package telemetry turns finished requests into Istio-compatible access
// logs and metrics, and exports michi's own configuration and upstream
// cluster statistics under the names Istio's Envoy uses, so that Istio's
// dashboards, alerts and log parsers work on michi unchanged.
//
// The dataplane fills a Record per request and hands it to AccessLog.Log
// and Metrics.Observe; both are cheap and allocation-free after warm-up.
// telemetry imports only upstream (for ClusterStatus), never the
// dataplane, engine or config packages.
package telemetry

import "time"

// Record is everything known about a finished request. The dataplane fills
// one per request; the access log and the metrics read it. Field names
// follow Envoy's access-log operators.
type Record struct {
	StartTime                      time.Time
	Method                         string
	Path                           string // X-ENVOY-ORIGINAL-PATH if a rewrite happened, else :path
	Protocol                       string // HTTP/1.1, HTTP/2
	ResponseCode                   int    // 0 when no response was sent
	ResponseFlags                  string // comma-separated Envoy flags, "-" style rendering is the logger's job
	ResponseCodeDetails            string
	ConnectionTerminationDetails   string
	UpstreamTransportFailureReason string
	BytesReceived                  int64
	BytesSent                      int64
	Duration                       time.Duration
	UpstreamServiceTime            time.Duration // 0 and HasUpstreamServiceTime false when no upstream answered
	HasUpstreamServiceTime         bool
	XForwardedFor                  string
	UserAgent                      string
	RequestID                      string
	Authority                      string
	UpstreamHost                   string // ip:port of the endpoint
	UpstreamCluster                string
	UpstreamLocalAddress           string
	DownstreamLocalAddress         string
	DownstreamRemoteAddress        string
	RequestedServerName            string
	RouteName                      string

	// For Istio standard metrics. Empty strings are reported as "unknown",
	// as Istio does when it lacks peer metadata.
	DestinationService   string // FQDN host of the destination, or "unknown"
	DestinationName      string // short service name
	DestinationNamespace string
	DestinationVersion   string // the endpoint's "version" label, or "unknown"
	DestinationSubset    string
	RequestProtocol      string // http or grpc
	GRPCStatus           string // grpc-status of the response, when gRPC

	// The destination workload, for the destination_* workload labels.
	// SetEndpointLabels fills App, Version and the canonical service from
	// the endpoint's labels; the dataplane sets the rest when it knows them.
	DestinationWorkload          string
	DestinationWorkloadNamespace string
	DestinationApp               string
	DestinationPrincipal         string // SPIFFE ID of the upstream, when mTLS verified one
	DestinationCluster           string
	DestinationCanonicalService  string
	DestinationCanonicalRevision string
}
