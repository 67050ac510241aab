package upstream

import (
	"bufio"
	"io"
	"net"
	"testing"

	"github.com/michi-mesh/michi/internal/routing"
)

// echoServer echoes every connection until EOF, then half-closes back.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func tcpCluster(addrs ...string) *routing.Cluster {
	c := httpCluster("outbound|3306||db", addrs...)
	c.Protocol = "TCP"
	return c
}

func TestDialTCP(t *testing.T) {
	addr := echoServer(t)
	m := newManager(t, Options{})
	c := update(t, m, tcpCluster(addr))["outbound|3306||db"]
	conn, att, err := c.DialTCP(t.Context(), AttemptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if att.Endpoint != addr {
		t.Errorf("endpoint = %q, want %q", att.Endpoint, addr)
	}
	io.WriteString(conn, "hello\n")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
	// Half-close: the echo server sees EOF and closes its side.
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after half-close = %v, want EOF", err)
	}
	if got := stat(t, m, c.Name(), "upstream_cx_active"); got != 1 {
		t.Errorf("upstream_cx_active = %d with one connection open, want 1", got)
	}
	conn.Close()
	conn.Close() // twice releases once
	if got := stat(t, m, c.Name(), "upstream_cx_active"); got != 0 {
		t.Errorf("upstream_cx_active = %d after Close, want 0", got)
	}
}

func TestDialTCPMaxConnections(t *testing.T) {
	addr := echoServer(t)
	m := newManager(t, Options{})
	cfg := tcpCluster(addr)
	cfg.Policy.ConnectionPool.MaxConnections = 1
	c := update(t, m, cfg)[cfg.Name]
	first, _, err := c.DialTCP(t.Context(), AttemptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.DialTCP(t.Context(), AttemptOptions{}); flagOf(err) != "UO" {
		t.Fatalf("second connection with maxConnections 1 = %v, want UO", err)
	}
	if got := stat(t, m, cfg.Name, "upstream_cx_overflow"); got != 1 {
		t.Errorf("upstream_cx_overflow = %d, want 1", got)
	}
	first.Close()
	second, _, err := c.DialTCP(t.Context(), AttemptOptions{})
	if err != nil {
		t.Fatalf("connection after the first closed = %v", err)
	}
	second.Close()
}

// TestTCPConnectFailuresEject: for a TCP cluster, connect failures are the
// errors outlier detection counts (consecutive5xxErrors).
func TestTCPConnectFailuresEject(t *testing.T) {
	dead, live := closedPort(t), echoServer(t)
	s := &outlierSetup{clock: newFakeClock(), ticks: &tickers{}}
	s.m = newManager(t, Options{Now: s.clock.Now, NewTicker: s.ticks.newTicker})
	cfg := tcpCluster(dead, live)
	cfg.Name = "c"
	od := istioOutlier(2)
	cfg.Policy.Outlier = &od
	s.c = update(t, s.m, cfg)["c"]
	failures := 0
	for range 20 {
		conn, _, err := s.c.DialTCP(t.Context(), AttemptOptions{})
		if err != nil {
			if flagOf(err) != "UF" {
				t.Fatalf("DialTCP = %v, want UF", err)
			}
			failures++
			continue
		}
		conn.Close()
	}
	if failures != 2 {
		t.Errorf("%d connect failures before the dead endpoint was ejected, want 2", failures)
	}
	if !s.endpoint(t, dead).Ejected {
		t.Error("dead endpoint not ejected after consecutive connect failures")
	}
}
