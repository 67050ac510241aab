package upstream

import "testing"

// TestStatusUsed checks that scrapes see only clusters with traffic.
func TestStatusUsed(t *testing.T) {
	b := newBackend(t, status(200), false)
	m := newManager(t, Options{})
	hs := update(t, m, httpCluster("outbound|80||used", b.addr()), httpCluster("outbound|80||idle", b.addr()))
	if got := m.StatusUsed(); len(got) != 0 {
		t.Fatalf("before any request StatusUsed = %d clusters, want 0", len(got))
	}
	if code, _, _, err := get(t, hs["outbound|80||used"], AttemptOptions{}); err != nil || code != 200 {
		t.Fatalf("request: %d %v", code, err)
	}
	got := m.StatusUsed()
	if len(got) != 1 || got[0].Name != "outbound|80||used" {
		t.Errorf("StatusUsed = %v, want only the used cluster", got)
	}
	if all := m.Status(); len(all) != 3 { // two clusters and the passthrough
		t.Errorf("Status = %d clusters, want 3", len(all))
	}
}
