package upstream

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

func TestStateOutlivesUpdate(t *testing.T) {
	bad := newBackend(t, status(500), false)
	good := newBackend(t, ok, false)
	third := newBackend(t, ok, false)
	s := newOutlierSetup(t, istioOutlier(1), bad.addr(), good.addr())
	s.ejectBad(t, bad.addr())
	for range 3 {
		get(t, s.c, AttemptOptions{})
	}
	before := s.endpoint(t, good.addr()).TotalRequests
	if before == 0 {
		t.Fatal("no traffic reached the good endpoint")
	}

	// A new configuration: another endpoint and another pool limit.
	cfg := httpCluster("c", bad.addr(), good.addr(), third.addr())
	od := istioOutlier(1)
	cfg.Policy.Outlier = &od
	cfg.Policy.ConnectionPool.MaxRequests = 100
	c := update(t, s.m, cfg)["c"]
	if c != s.c {
		t.Fatal("Update replaced the Cluster handle of a kept cluster")
	}
	if es := s.endpoint(t, bad.addr()); !es.Ejected || es.EjectionCount != 1 {
		t.Errorf("kept endpoint after Update = %+v, want still ejected, once", es)
	}
	if got := s.endpoint(t, good.addr()).TotalRequests; got != before {
		t.Errorf("kept endpoint's TotalRequests = %d after Update, want %d", got, before)
	}
	if got := stat(t, s.m, "c", "outlier_detection.ejections_active"); got != 1 {
		t.Errorf("ejections_active = %d, want 1", got)
	}
	if got := c.Config().Policy.ConnectionPool.MaxRequests; got != 100 {
		t.Errorf("Config().MaxRequests = %d, want the new 100", got)
	}
	// The reused connection to the good endpoint survives the update.
	for range 6 {
		if _, _, att, err := get(t, c, AttemptOptions{}); err != nil || att.Endpoint == bad.addr() {
			t.Fatalf("request after Update = %v to %s", err, att.Endpoint)
		}
	}
	if got := good.conns.Load(); got != 1 {
		t.Errorf("good endpoint saw %d connections across the update, want 1", got)
	}

	// Removing the ejected endpoint drops its ejection.
	cfg = httpCluster("c", good.addr(), third.addr())
	cfg.Policy.Outlier = &od
	update(t, s.m, cfg)
	if got := stat(t, s.m, "c", "outlier_detection.ejections_active"); got != 0 {
		t.Errorf("ejections_active = %d after the ejected endpoint left, want 0", got)
	}
	for _, cs := range s.m.Status() {
		for _, es := range cs.Endpoints {
			if es.Address == bad.addr() {
				t.Errorf("removed endpoint %s still in Status", bad.addr())
			}
		}
	}
	// It comes back fresh.
	cfg = httpCluster("c", bad.addr(), good.addr(), third.addr())
	cfg.Policy.Outlier = &od
	update(t, s.m, cfg)
	if es := s.endpoint(t, bad.addr()); es.Ejected || es.EjectionCount != 0 || es.TotalRequests != 0 {
		t.Errorf("re-added endpoint = %+v, want fresh state", es)
	}
}

func TestTransportChangeDrainsConnections(t *testing.T) {
	b := newBackend(t, ok, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	c := update(t, m, cfg)["c"]
	if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg = httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.TCPKeepalive = &routing.TCPKeepalive{Time: time.Minute}
	update(t, m, cfg)
	select {
	case <-b.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection made with the old socket options was not closed")
	}
	if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := b.conns.Load(); got != 2 {
		t.Errorf("server saw %d connections, want 2", got)
	}
}

func TestRemovedClusterFinishesInFlight(t *testing.T) {
	bl := newBlocker()
	b := newBackend(t, bl, false)
	m := newManager(t, Options{})
	c := update(t, m, httpCluster("old", b.addr()))["old"]
	inflight := async(t, c, AttemptOptions{})
	<-bl.arrived

	handles := update(t, m, httpCluster("new", b.addr()))
	if _, ok := handles["old"]; ok {
		t.Fatal("Update still returns the removed cluster")
	}
	for _, cs := range m.Status() {
		if cs.Name == "old" {
			t.Error("removed cluster still in Status")
		}
	}
	close(bl.release)
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight request on the removed cluster = %v, want success", err)
	}
	select {
	case <-b.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the removed cluster's connection was not closed once idle")
	}
	// A straggler holding the old handle is still served.
	if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
		t.Errorf("request on a removed cluster's handle = %v, want success", err)
	}
}

func TestManagerCloseFailsInFlight(t *testing.T) {
	bl := newBlocker()
	b := newBackend(t, bl, false)
	defer close(bl.release)
	m := NewManager(Options{})
	c := update(t, m, httpCluster("c", b.addr()))["c"]
	inflight := async(t, c, AttemptOptions{})
	<-bl.arrived
	m.Close()
	select {
	case err := <-inflight:
		if err == nil {
			t.Error("in-flight request succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt the request in flight")
	}
}

// echoUpgrade switches to a raw echo protocol on Upgrade: echo.
var echoUpgrade = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "echo" {
		io.WriteString(w, "plain")
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	brw.Flush()
	io.Copy(conn, brw)
})

func TestUpgradeTunnel(t *testing.T) {
	b := newBackend(t, echoUpgrade, true)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Protocol = "HTTP2" // upgrades still go over HTTP/1.1
	c := update(t, m, cfg)["c"]

	req := newRequest(t, "GET", "/")
	req.Header.Set("Upgrade", "echo")
	req.Header.Set("Connection", "Upgrade")
	resp, _, err := c.RoundTrip(context.Background(), req, AttemptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is %T, want an io.ReadWriteCloser", resp.Body)
	}
	if _, err := io.WriteString(rwc, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(rwc).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo = %q, %v; want \"ping\\n\"", line, err)
	}
	if got := stat(t, m, "c", "upstream_cx_active"); got != 1 {
		t.Errorf("upstream_cx_active = %d during the tunnel, want 1", got)
	}
	if got := stat(t, m, "c", "upstream_rq_active"); got != 1 {
		t.Errorf("upstream_rq_active = %d during the tunnel, want 1", got)
	}
	rwc.Close()
	if got := stat(t, m, "c", "upstream_rq_active"); got != 0 {
		t.Errorf("upstream_rq_active = %d after the tunnel closed, want 0", got)
	}
	waitFor(t, "the tunnel's connection to be released", func() bool { return stat(t, m, "c", "upstream_cx_active") == 0 })

	// The upgraded connection is never reused.
	if code, body, _, err := get(t, c, AttemptOptions{}); err != nil || code != 200 || body != "plain" {
		t.Fatalf("request after the tunnel = %d %q %v", code, body, err)
	}
	if got := b.conns.Load(); got != 2 {
		t.Errorf("server saw %d connections, want 2", got)
	}
}
