package dataplane

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func splitVS(w1, w2 int) string {
	return fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: %d}
    - {destination: {host: reviews, subset: v2}, weight: %d}
`, w1, w2)
}

// TestReloadUnderLoad swaps the routing table continuously while clients
// send requests: not one request may fail.
func TestReloadUnderLoad(t *testing.T) {
	bi := newBookinfo(t)
	cfgA := render(t, services+"---\n"+splitVS(100, 0), bi.all()...)
	cfgB := render(t, services+"---\n"+splitVS(0, 100), bi.all()...)
	p := newProxy(t, cfgA)

	stop := make(chan struct{})
	var reloads atomic.Int64
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				p.apply(cfgB)
			} else {
				p.apply(cfgA)
			}
			reloads.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()

	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	seen := sync.Map{}
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				resp, err := p.client.Get("http://reviews:9080/")
				if err != nil {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				seen.Store(resp.Header.Get("X-Backend"), true)
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during %d reloads", failed.Load(), ok.Load()+failed.Load(), reloads.Load())
	}
	_, v1 := seen.Load("v1")
	_, v2 := seen.Load("v2")
	if !v1 || !v2 {
		t.Errorf("both configs should have served traffic (v1 %v, v2 %v, %d reloads)", v1, v2, reloads.Load())
	}
}

// TestInFlightKeepsSnapshot checks that a request finishes on the table it
// started with.
func TestInFlightKeepsSnapshot(t *testing.T) {
	bi := newBookinfo(t)
	cfgA := render(t, services+"---\n"+splitVS(100, 0), bi.all()...)
	cfgB := render(t, services+"---\n"+`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - directResponse: {status: 410}
`, bi.all()...)
	p := newProxy(t, cfgA)
	done := make(chan *response)
	go func() {
		done <- p.get("http://reviews:9080/", map[string]string{"x-test-delay": "300ms"})
	}()
	// Wait for the request to reach v1, then swap the table.
	deadline := time.Now().Add(2 * time.Second)
	for bi.v1.hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	p.apply(cfgB)
	if resp := p.get("http://reviews:9080/", nil); resp.StatusCode != 410 {
		t.Fatalf("new request after reload: status %d, want 410", resp.StatusCode)
	}
	if resp := <-done; resp.StatusCode != 200 || resp.backendName() != "v1" {
		t.Errorf("in-flight request: status %d from %q, want 200 from v1", resp.StatusCode, resp.backendName())
	}
}
