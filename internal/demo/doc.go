// Package demo is what `michi demo` runs around the proxy: a Bookinfo-like
// set of workloads on loopback, the Istio configuration that routes
// between them (the seed documents' canary, header routing, timeout,
// fault injection and circuit breaker, pointed at the workloads' ports),
// a little background traffic, and a live summary read from the proxy's
// own admin endpoints.
//
// demo sits beside the pipeline, not in it: it never imports the engine,
// dataplane or compile packages. The workloads reach each other through
// the proxy like applications behind a sidecar, the configuration is
// plain YAML that the proxy loads like any other, and the summary knows
// only what /stats/prometheus, /clusters and /config_dump say, so what it
// shows is what michi did.
package demo
