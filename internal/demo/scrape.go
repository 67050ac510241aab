package demo

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/upstream"
)

// Snapshot is what the proxy's admin endpoints said at one moment.
type Snapshot struct {
	Time time.Time
	// Requests is istio_requests_total from /stats/prometheus, summed over
	// the labels the summary does not show.
	Requests []RequestCount
	// Clusters is /clusters?format=json.
	Clusters []upstream.ClusterStatus
	// Config is the part of /config_dump about reloads.
	Config ConfigStatus
}

type endpointStatus = upstream.EndpointStatus

// RequestCount is the number of requests to one destination that ended
// with one response code and set of response flags.
type RequestCount struct {
	// Service is destination_service_name ("reviews"); Version is
	// destination_version, the version label of the endpoint that
	// answered, "unknown" when none did (a fault abort, a timeout, an
	// overflow).
	Service, Version string
	// Code is response_code; "0" when no response was sent.
	Code string
	// Flags is response_flags: Envoy's flags, comma-separated, "-" for
	// none.
	Flags string
	Count float64
}

// ConfigStatus is which configuration is live, and whether a later one
// was rejected.
type ConfigStatus struct {
	Version     string     `json:"version"`
	LastApplied *time.Time `json:"lastApplied"`
	// LastReloadError is set while the files on disk are not the live
	// configuration because they have errors.
	LastReloadError *RejectedChange `json:"lastReloadError"`
}

// RejectedChange is a configuration change the proxy refused, and why.
type RejectedChange struct {
	Time     time.Time          `json:"time"`
	Findings config.Diagnostics `json:"findings"`
}

// Scraper reads a proxy's admin endpoints. It is safe for concurrent use.
type Scraper struct {
	// Admin is the admin listener, host:port.
	Admin string
	// Client sends the requests; nil means one that never goes through
	// a proxy, whatever HTTP_PROXY says.
	Client *http.Client
}

// adminClient is the default Scraper client. The demo tells users to
// export http_proxy; the summary must not follow that advice itself.
var adminClient = &http.Client{Transport: &http.Transport{Proxy: nil}}

// Scrape reads /stats/prometheus, /clusters?format=json and /config_dump.
func (s *Scraper) Scrape(ctx context.Context) (*Snapshot, error) {
	snap := &Snapshot{Time: time.Now()}
	var err error
	if snap.Requests, err = s.requests(ctx); err != nil {
		return nil, err
	}
	if err := s.getJSON(ctx, "/clusters?format=json", &snap.Clusters); err != nil {
		return nil, err
	}
	if err := s.getJSON(ctx, "/config_dump", &snap.Config); err != nil {
		return nil, err
	}
	return snap, nil
}

// requests parses istio_requests_total into one count per (service,
// version, code, flags).
func (s *Scraper) requests(ctx context.Context) ([]RequestCount, error) {
	body, err := s.get(ctx, "/stats/prometheus")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(body)
	if err != nil {
		return nil, fmt.Errorf("/stats/prometheus: %w", err)
	}
	type key struct{ service, version, code, flags string }
	sums := map[key]float64{}
	if mf := families["istio_requests_total"]; mf != nil {
		for _, m := range mf.GetMetric() {
			var k key
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "destination_service_name":
					k.service = l.GetValue()
				case "destination_version":
					k.version = l.GetValue()
				case "response_code":
					k.code = l.GetValue()
				case "response_flags":
					k.flags = l.GetValue()
				}
			}
			sums[k] += m.GetCounter().GetValue()
		}
	}
	out := make([]RequestCount, 0, len(sums))
	for k, n := range sums {
		out = append(out, RequestCount{Service: k.service, Version: k.version, Code: k.code, Flags: k.flags, Count: n})
	}
	slices.SortFunc(out, func(a, b RequestCount) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Version, b.Version),
			cmp.Compare(a.Code, b.Code), cmp.Compare(a.Flags, b.Flags))
	})
	return out, nil
}

func (s *Scraper) getJSON(ctx context.Context, path string, v any) error {
	body, err := s.get(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (s *Scraper) get(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Admin+path, nil)
	if err != nil {
		return nil, err
	}
	client := s.Client
	if client == nil {
		client = adminClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return resp.Body, nil
}
