package demo

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func startWorkloads(t *testing.T) *Workloads {
	t.Helper()
	ws, err := StartWorkloads()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

func byName(t *testing.T, ws *Workloads, name string) *Workload {
	t.Helper()
	for _, wl := range ws.List() {
		if wl.Name == name {
			return wl
		}
	}
	t.Fatalf("no workload %q", name)
	return nil
}

// getDirect asks a workload itself, not through any mesh.
func getDirect(t *testing.T, addr string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func TestWorkloadsAnswer(t *testing.T) {
	ws := startWorkloads(t)
	tests := []struct {
		name       string
		wantStatus int
		wantBody   string
	}{
		{"reviews-v1", 200, "reviews v1 (no stars)\n"},
		{"ratings-v1", 200, "ratings v1: 4 of 5 stars\n"},
		{"ratings-v1-broken", 503, "ratings v1 (broken instance): database connection lost\n"},
		// Without a mesh, calls fail and the page says so rather than
		// failing, as Bookinfo's pages do.
		{"reviews-v2", 200, "reviews v2 (stars: black)\n  ratings unavailable: Get \"http://ratings:9080/ratings/0\": the mesh is not up yet\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wl := byName(t, ws, tc.name)
			status, h, body := getDirect(t, wl.Addr, nil)
			if status != tc.wantStatus || body != tc.wantBody {
				t.Errorf("GET %s: %d %q, want %d %q", tc.name, status, body, tc.wantStatus, tc.wantBody)
			}
			if h.Get(HeaderApp) != wl.App || h.Get(HeaderVersion) != wl.Version {
				t.Errorf("GET %s: headers %s=%q %s=%q, want %q %q", tc.name, HeaderApp, h.Get(HeaderApp), HeaderVersion, h.Get(HeaderVersion), wl.App, wl.Version)
			}
		})
	}
}

// TestWorkloadsCallThroughMesh checks that productpage sends its call to
// the mesh address as a proxy request for reviews:9080, with the user's
// headers, and shows the answer. The stand-in mesh records what it got.
func TestWorkloadsCallThroughMesh(t *testing.T) {
	ws := startWorkloads(t)
	got := make(chan *http.Request, 1)
	mesh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		io.WriteString(w, "reviews v9 (stars: green)\n  ratings v9: 5 of 5 stars\n")
	}))
	defer mesh.Close()
	ws.SetMesh(mesh.Listener.Addr().String())

	status, _, body := getDirect(t, byName(t, ws, "productpage-v1").Addr, http.Header{
		"End-User": {"jason"}, "X-Request-Id": {"req-1"}, "Cookie": {"secret=1"},
	})
	want := "productpage v1 (user: jason)\n  reviews v9 (stars: green)\n    ratings v9: 5 of 5 stars\n"
	if status != 200 || body != want {
		t.Errorf("productpage: %d\n%s\nwant 200\n%s", status, body, want)
	}
	r := <-got
	if r.RequestURI != "http://reviews:9080/reviews/0" {
		t.Errorf("mesh got request-target %q, want the absolute form http://reviews:9080/reviews/0", r.RequestURI)
	}
	hdr := map[string]string{}
	for _, h := range []string{"End-User", "X-Request-Id", "Cookie"} {
		hdr[h] = r.Header.Get(h)
	}
	if diff := cmp.Diff(map[string]string{"End-User": "jason", "X-Request-Id": "req-1", "Cookie": ""}, hdr); diff != "" {
		t.Errorf("headers carried to reviews (-want +got):\n%s", diff)
	}
}

func TestWorkloadsClose(t *testing.T) {
	ws, err := StartWorkloads()
	if err != nil {
		t.Fatal(err)
	}
	// reviews v2 is in flight, waiting for its call to ratings, when the
	// workloads close; the call must be cancelled with it.
	arrived, cancelled := make(chan struct{}), make(chan struct{})
	mesh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
		close(cancelled)
	}))
	defer mesh.Close()
	ws.SetMesh(mesh.Listener.Addr().String())
	clientErr := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + byName(t, ws, "reviews-v2").Addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		clientErr <- err
	}()
	<-arrived
	if err := ws.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the call reviews v2 was making outlived Close")
	}
	if err := <-clientErr; err == nil {
		t.Error("the request in flight got an answer, want its connection closed")
	}
	for _, wl := range ws.List() {
		var d net.Dialer
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := d.DialContext(ctx, "tcp", wl.Addr)
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Close", wl.Name)
		}
	}
}

func TestTrafficRotatesUsers(t *testing.T) {
	type seen struct{ target, user string }
	got := make(chan seen, 16)
	mesh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- seen{r.RequestURI, r.Header.Get("End-User")}:
		default:
		}
	}))
	defer mesh.Close()

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		(&Traffic{Mesh: mesh.Listener.Addr().String(), Rate: 1000}).Run(ctx)
		close(stopped)
	}()
	var users []string
	for range 8 {
		s := <-got
		if s.target != "http://productpage:9080/" {
			t.Errorf("traffic sent %q, want a proxy request for http://productpage:9080/", s.target)
		}
		users = append(users, s.user)
	}
	cancel()
	<-stopped
	want := []string{"", "", "", "jason", "", "", "", "jason"}
	if diff := cmp.Diff(want, users); diff != "" {
		t.Errorf("users (-want +got):\n%s", diff)
	}
}
