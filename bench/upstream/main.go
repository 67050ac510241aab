// Command upstream is the benchmark's backend: it answers every request
// with the same 1 KiB body, over HTTP/1.1 and cleartext HTTP/2 (h2c, prior
// knowledge) on the same port, so that the proxies under test, not the
// backend, are what varies between runs.
//
// It does as little as a server can: no routing, no logging, no body
// parsing. That keeps the "direct" baseline close to the physical limit of
// the loopback path and makes a proxy's added latency easy to read.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "comma-separated addresses to serve on")
	size := flag.Int("size", 1024, "response body size in bytes")
	flag.Parse()

	body := make([]byte, *size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	length := strconv.Itoa(len(body))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Drain the request body so the connection can be reused; the
		// benchmark sends none, but a proxy's retry or mirror might.
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var servers []*http.Server
	errc := make(chan error, 1)
	for _, addr := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatalf("upstream: listen %s: %v", addr, err)
		}
		srv := &http.Server{
			Handler:           handler,
			Protocols:         &protocols,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          log.New(io.Discard, "", 0),
		}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				select {
				case errc <- fmt.Errorf("serve %s: %w", addr, err):
				default:
				}
			}
		}()
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		log.Fatalf("upstream: %v", err)
	}
	for _, srv := range servers {
		_ = srv.Close()
	}
}
