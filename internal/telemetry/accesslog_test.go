package telemetry

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fullRecord is a request that went through an upstream, with every
// field the access log prints set.
func fullRecord() *Record {
	return &Record{
		StartTime:               time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600)),
		Method:                  "GET",
		Path:                    "/reviews/0",
		Protocol:                "HTTP/1.1",
		ResponseCode:            200,
		ResponseCodeDetails:     "via_upstream",
		BytesReceived:           12,
		BytesSent:               358,
		Duration:                5*time.Millisecond + 900*time.Microsecond,
		UpstreamServiceTime:     4 * time.Millisecond,
		HasUpstreamServiceTime:  true,
		XForwardedFor:           "10.0.0.1",
		UserAgent:               "curl/8.5.0",
		RequestID:               "8e1b1b4a-8b5c-4a4e-a0f5-5a8c4f5c9f3d",
		Authority:               "reviews:9080",
		UpstreamHost:            "127.0.0.1:9081",
		UpstreamCluster:         "outbound|9080|v1|reviews.default.svc.cluster.local",
		UpstreamLocalAddress:    "127.0.0.1:40000",
		DownstreamLocalAddress:  "127.0.0.1:15001",
		DownstreamRemoteAddress: "127.0.0.1:50000",
		RequestedServerName:     "reviews.default.svc.cluster.local",
		RouteName:               "default",
	}
}

func TestTextFormat(t *testing.T) {
	noRoute := &Record{
		StartTime:               time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC),
		Method:                  "POST",
		Path:                    "/nowhere",
		Protocol:                "HTTP/2",
		ResponseCode:            404,
		ResponseFlags:           "NR",
		ResponseCodeDetails:     "route_not_found",
		Duration:                0,
		DownstreamLocalAddress:  "127.0.0.1:15001",
		DownstreamRemoteAddress: "127.0.0.1:50001",
	}
	tests := []struct {
		name string
		rec  *Record
		want string
	}{
		{
			name: "proxied request",
			rec:  fullRecord(),
			want: `[2024-05-01T10:00:00.123Z] "GET /reviews/0 HTTP/1.1" 200 - via_upstream - "-" 12 358 5 4 ` +
				`"10.0.0.1" "curl/8.5.0" "8e1b1b4a-8b5c-4a4e-a0f5-5a8c4f5c9f3d" "reviews:9080" "127.0.0.1:9081" ` +
				`outbound|9080|v1|reviews.default.svc.cluster.local 127.0.0.1:40000 127.0.0.1:15001 127.0.0.1:50000 ` +
				"reviews.default.svc.cluster.local default\n",
		},
		{
			name: "no route: missing values are dashes, also in quotes",
			rec:  noRoute,
			want: `[2024-05-01T10:00:00.000Z] "POST /nowhere HTTP/2" 404 NR route_not_found - "-" 0 0 0 - ` +
				`"-" "-" "-" "-" "-" - - 127.0.0.1:15001 127.0.0.1:50001 - -` + "\n",
		},
		{
			name: "empty record",
			rec:  &Record{},
			want: `[-] "- - -" 0 - - - "-" 0 0 0 - "-" "-" "-" "-" "-" - - - - - -` + "\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			l, err := NewAccessLog(&out, FormatText)
			if err != nil {
				t.Fatal(err)
			}
			l.Log(tc.rec)
			if diff := cmp.Diff(tc.want, out.String()); diff != "" {
				t.Errorf("text line mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJSONFormat(t *testing.T) {
	odd := fullRecord()
	odd.UserAgent = "quote\" backslash\\ tab\t nul\x00 bad\xff utf8 é"
	odd.HasUpstreamServiceTime = false
	odd.ResponseFlags = "UO,URX"
	odd.RequestedServerName = ""

	tests := []struct {
		name string
		rec  *Record
		want map[string]any
	}{
		{
			name: "proxied request",
			rec:  fullRecord(),
			want: map[string]any{
				"authority":                         "reviews:9080",
				"bytes_received":                    12.0,
				"bytes_sent":                        358.0,
				"connection_termination_details":    nil,
				"downstream_local_address":          "127.0.0.1:15001",
				"downstream_remote_address":         "127.0.0.1:50000",
				"duration":                          5.0,
				"method":                            "GET",
				"path":                              "/reviews/0",
				"protocol":                          "HTTP/1.1",
				"request_id":                        "8e1b1b4a-8b5c-4a4e-a0f5-5a8c4f5c9f3d",
				"requested_server_name":             "reviews.default.svc.cluster.local",
				"response_code":                     200.0,
				"response_code_details":             "via_upstream",
				"response_flags":                    "-",
				"route_name":                        "default",
				"start_time":                        "2024-05-01T10:00:00.123Z",
				"upstream_cluster":                  "outbound|9080|v1|reviews.default.svc.cluster.local",
				"upstream_host":                     "127.0.0.1:9081",
				"upstream_local_address":            "127.0.0.1:40000",
				"upstream_service_time":             "4",
				"upstream_transport_failure_reason": nil,
				"user_agent":                        "curl/8.5.0",
				"x_forwarded_for":                   "10.0.0.1",
			},
		},
		{
			name: "escaping, flags and missing values",
			rec:  odd,
			want: map[string]any{
				"user_agent":            "quote\" backslash\\ tab\t nul\x00 bad\ufffd utf8 é",
				"upstream_service_time": nil,
				"response_flags":        "UO,URX",
				"requested_server_name": nil,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			l, err := NewAccessLog(&out, FormatJSON)
			if err != nil {
				t.Fatal(err)
			}
			l.Log(tc.rec)
			line := out.String()
			if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
				t.Fatalf("got %q, want one JSON object on one line", line)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("line is not valid JSON: %v\n%s", err, line)
			}
			if len(got) != 24 {
				t.Errorf("got %d keys, want the 24 of Istio's JSON format", len(got))
			}
			for k, want := range tc.want {
				if diff := cmp.Diff(want, got[k]); diff != "" {
					t.Errorf("key %q mismatch (-want +got):\n%s", k, diff)
				}
			}
			// Envoy writes the keys in sorted order.
			var keys []string
			dec := json.NewDecoder(strings.NewReader(line))
			dec.Token() // {
			for dec.More() {
				k, _ := dec.Token()
				keys = append(keys, k.(string))
				var skip any
				dec.Decode(&skip)
			}
			for i := 1; i < len(keys); i++ {
				if keys[i-1] >= keys[i] {
					t.Errorf("key %q comes after %q, want sorted keys", keys[i], keys[i-1])
				}
			}
		})
	}
}

func TestNewAccessLogRejectsUnknownFormat(t *testing.T) {
	_, err := NewAccessLog(io.Discard, "yaml")
	if err == nil || !strings.Contains(err.Error(), `"yaml"`) {
		t.Errorf("NewAccessLog(yaml) error = %v, want an error naming the format", err)
	}
}

// lineWriter records every Write call, to check that each is one line.
type lineWriter struct {
	mu     sync.Mutex
	writes []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func TestLogConcurrentWritesWholeLines(t *testing.T) {
	for _, format := range []string{FormatText, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			w := &lineWriter{}
			l, err := NewAccessLog(w, format)
			if err != nil {
				t.Fatal(err)
			}
			const goroutines, each = 8, 200
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := fullRecord()
					r.Path = "/g/" + strings.Repeat("x", g)
					for range each {
						l.Log(r)
					}
				}()
			}
			wg.Wait()
			if got, want := len(w.writes), goroutines*each; got != want {
				t.Fatalf("got %d writes, want %d (one per record)", got, want)
			}
			for _, line := range w.writes {
				if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || !strings.Contains(line, "/g/") {
					t.Fatalf("got write %q, want exactly one whole line", line)
				}
			}
		})
	}
}

func TestLogAllocations(t *testing.T) {
	for _, format := range []string{FormatText, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			l, err := NewAccessLog(io.Discard, format)
			if err != nil {
				t.Fatal(err)
			}
			r := fullRecord()
			l.Log(r) // warm the buffer pool
			if got := testing.AllocsPerRun(100, func() { l.Log(r) }); got != 0 {
				t.Errorf("Log allocates %.1f times per record, want 0", got)
			}
		})
	}
}

func TestNilAccessLogDiscards(t *testing.T) {
	var l *AccessLog
	l.Log(fullRecord()) // must not panic
}

func TestOpenAccessLog(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		spec    string
		format  string
		wantNil bool
		wantErr string
	}{
		{name: "off", spec: "off", format: "text", wantNil: true},
		{name: "empty is off", spec: "", format: "json", wantNil: true},
		{name: "stdout", spec: "stdout", format: "text"},
		{name: "file", spec: filepath.Join(dir, "access.log"), format: "json"},
		{name: "bad format", spec: "stdout", format: "xml", wantErr: `"xml"`},
		{name: "bad format while off", spec: "off", format: "xml", wantErr: `"xml"`},
		{name: "unwritable file", spec: filepath.Join(dir, "missing", "access.log"), format: "text", wantErr: "open access log"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, closer, err := OpenAccessLog(tc.spec, tc.format)
			if closer == nil {
				t.Fatal("OpenAccessLog returned a nil Closer")
			}
			defer closer.Close()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("OpenAccessLog(%q, %q) error = %v, want one containing %s", tc.spec, tc.format, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenAccessLog(%q, %q): %v", tc.spec, tc.format, err)
			}
			if (l == nil) != tc.wantNil {
				t.Fatalf("OpenAccessLog(%q) log = %v, want nil %v", tc.spec, l, tc.wantNil)
			}
		})
	}
}

func TestOpenAccessLogAppendsToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("earlier line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, closer, err := OpenAccessLog(path, FormatText)
	if err != nil {
		t.Fatal(err)
	}
	l.Log(fullRecord())
	l.Log(fullRecord())
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "earlier line" || !strings.HasPrefix(lines[2], "[2024-05-01T10:00:00.123Z]") {
		t.Errorf("got file %q, want the earlier line followed by two records", data)
	}
}

func BenchmarkAccessLog(b *testing.B) {
	for _, format := range []string{FormatText, FormatJSON} {
		b.Run(format, func(b *testing.B) {
			l, err := NewAccessLog(io.Discard, format)
			if err != nil {
				b.Fatal(err)
			}
			r := fullRecord()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.Log(r)
				}
			})
		})
	}
}
