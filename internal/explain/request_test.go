package explain

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantMethod string
		wantURL    string
		wantErr    string
	}{
		{name: "method and URL in one argument", args: []string{"POST http://reviews:9080/a"}, wantMethod: "POST", wantURL: "http://reviews:9080/a"},
		{name: "URL alone is GET", args: []string{"http://reviews/"}, wantMethod: "GET", wantURL: "http://reviews/"},
		{name: "method and URL as two arguments", args: []string{"DELETE", "http://reviews/x"}, wantMethod: "DELETE", wantURL: "http://reviews/x"},
		{name: "nothing", args: nil, wantErr: "no request given"},
		{name: "too many words", args: []string{"GET http://a/ http://b/"}, wantErr: "want 'METHOD URL' or 'URL'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, u, err := ParseTarget(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseTarget(%q) error = %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil || m != tc.wantMethod || u != tc.wantURL {
				t.Errorf("ParseTarget(%q) = %q, %q, %v; want %q, %q", tc.args, m, u, err, tc.wantMethod, tc.wantURL)
			}
		})
	}
}

func TestNewRequestErrors(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		url      string
		headers  []string
		sourceIP string
		wantErr  string
	}{
		{name: "method with a bad character", method: "GE/T", url: "http://a/", wantErr: `method "GE/T"`},
		{name: "relative URL", method: "GET", url: "/reviews", wantErr: "want an absolute http:// or https:// URL"},
		{name: "other scheme", method: "GET", url: "ftp://a/", wantErr: "want an absolute http:// or https:// URL"},
		{name: "no host", method: "GET", url: "http:///x", wantErr: "has no host"},
		{name: "port out of range", method: "GET", url: "http://a:70000/", wantErr: "the port is not a number from 1 to 65535"},
		{name: "port zero in Host", method: "GET", url: "http://a/", headers: []string{"Host: a:0"}, wantErr: "the port is not a number"},
		{name: "header without colon", method: "GET", url: "http://a/", headers: []string{"x-user jason"}, wantErr: "want 'Name: value'"},
		{name: "header without name", method: "GET", url: "http://a/", headers: []string{": v"}, wantErr: "want 'Name: value'"},
		{name: "empty Host", method: "GET", url: "http://a/", headers: []string{"Host:"}, wantErr: "empty host"},
		{name: "bad source IP", method: "GET", url: "http://a/", sourceIP: "10.0.0", wantErr: "--source-ip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRequest(tc.method, tc.url, tc.headers, tc.sourceIP)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewRequest error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewRequest(t *testing.T) {
	req, err := NewRequest("GET", "http://user@reviews:9080?a=1#frag", []string{"x-user: u1", "X-User: u2", "host: ratings:9080", "x-empty:"}, "2001:db8::1")
	if err != nil {
		t.Fatal(err)
	}
	hr := req.httpRequest()
	if hr.Host != "ratings:9080" {
		t.Errorf("Host = %q, want the -H override ratings:9080", hr.Host)
	}
	if hr.URL.Path != "/" || hr.URL.RawQuery != "a=1" {
		t.Errorf("path %q query %q, want / and a=1", hr.URL.Path, hr.URL.RawQuery)
	}
	if diff := cmp.Diff(http.Header{"X-User": {"u1", "u2"}, "X-Empty": {""}}, hr.Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if hr.RemoteAddr != "[2001:db8::1]:0" {
		t.Errorf("RemoteAddr = %q, want [2001:db8::1]:0", hr.RemoteAddr)
	}
	if req.URL.String() != "http://reviews:9080/?a=1" {
		t.Errorf("URL = %s, want user info and fragment dropped", req.URL)
	}
}
