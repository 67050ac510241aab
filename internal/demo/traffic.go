package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// trafficUsers are the users Traffic sends as, in turn: three anonymous
// requests, which take the canary split, then one from jason, who always
// sees reviews v2 (and so calls ratings).
var trafficUsers = []string{"", "", "", "jason"}

// Traffic sends background requests to productpage through the mesh, so
// that the live summary moves before anyone types curl. It sends one
// request at a time and skips a beat rather than queueing when a request
// is slow, so it never trips the circuit breaker by itself.
type Traffic struct {
	// Mesh is the proxy's mesh listener, host:port.
	Mesh string
	// Rate is how many requests to send per second; it must be positive.
	Rate float64
}

// Run sends requests until ctx is done.
func (t *Traffic) Run(ctx context.Context) {
	transport := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: t.Mesh})}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	tick := time.NewTicker(time.Duration(float64(time.Second) / t.Rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://productpage:%d/", MeshPort), nil)
		if err != nil {
			return
		}
		if u := trafficUsers[i%len(trafficUsers)]; u != "" {
			req.Header.Set("End-User", u)
		}
		resp, err := client.Do(req)
		if err != nil {
			continue // the summary shows what michi made of it
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
