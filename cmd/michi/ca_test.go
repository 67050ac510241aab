package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/michi-mesh/michi/internal/meshca"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = runMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCAInitAndIssue(t *testing.T) {
	dir := t.TempDir()
	caDir, out := filepath.Join(dir, "ca"), filepath.Join(dir, "reviews")
	code, stdout, stderr := runCLI("ca", "init", "--dir", caDir)
	if code != exitOK || !strings.Contains(stdout, "trust domain cluster.local") {
		t.Fatalf("ca init = %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI("ca", "issue", "--dir", caDir, "--namespace", "bookinfo", "--service-account", "reviews", "--out", out, "--dns", "reviews.bookinfo")
	if code != exitOK || !strings.Contains(stdout, "spiffe://cluster.local/ns/bookinfo/sa/reviews") {
		t.Fatalf("ca issue = %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	id, err := meshca.LoadIdentityDir(out)
	if err != nil {
		t.Fatalf("the issued files do not load as a mesh identity: %v", err)
	}
	if id.ID.String() != "spiffe://cluster.local/ns/bookinfo/sa/reviews" || len(id.Leaf.DNSNames) != 1 {
		t.Errorf("issued identity = %s %v, want the SPIFFE ID and one DNS SAN", id.ID, id.Leaf.DNSNames)
	}
	root, _ := os.ReadFile(filepath.Join(caDir, meshca.RootCertFile))
	if !bytes.Equal(root, id.RootsPEM) {
		t.Error("root-cert.pem in the output is not the CA's root")
	}

	if code, _, stderr := runCLI("ca", "init", "--dir", caDir); code != exitFail || !strings.Contains(stderr, "already exists") {
		t.Errorf("second ca init = %d, %q; want exit 1 refusing to overwrite", code, stderr)
	}
}

func TestCAUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{name: "no subcommand", args: []string{"ca"}, want: exitUsage, msg: "Usage"},
		{name: "unknown subcommand", args: []string{"ca", "rotate"}, want: exitUsage, msg: `unknown subcommand "rotate"`},
		{name: "init without dir", args: []string{"ca", "init"}, want: exitUsage, msg: "--dir is required"},
		{name: "issue without service account", args: []string{"ca", "issue", "--dir", dir, "--namespace", "ns", "--out", dir}, want: exitUsage, msg: "--service-account is required"},
		{name: "issue without a CA", args: []string{"ca", "issue", "--dir", dir, "--namespace", "ns", "--service-account", "sa", "--out", dir}, want: exitFail, msg: "loading the CA"},
		{name: "bad flag", args: []string{"ca", "init", "--nope"}, want: exitUsage, msg: "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(tc.args...)
			if code != tc.want || !strings.Contains(stderr, tc.msg) {
				t.Errorf("michi %v = %d, stderr %q; want %d containing %q", tc.args, code, stderr, tc.want, tc.msg)
			}
		})
	}
	if code, stdout, _ := runCLI("ca", "--help"); code != exitOK || !strings.Contains(stdout, "michi ca issue") {
		t.Errorf("michi ca --help = %d, %q", code, stdout)
	}
}
