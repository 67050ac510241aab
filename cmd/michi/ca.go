package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/michi-mesh/michi/internal/meshca"
)

func init() {
	register("ca", "create a mesh CA and issue workload certificates (init, issue)", runCA)
}

func caUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w, "  michi ca init  --dir DIR [--trust-domain cluster.local] [--ttl 87600h]")
	fmt.Fprintln(w, "  michi ca issue --dir DIR --namespace NS --service-account SA --out DIR [--ttl 8760h] [--dns NAME ...]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "A built-in mesh certificate authority, so that michi proxies can talk")
	fmt.Fprintln(w, "ISTIO_MUTUAL without istiod. 'init' creates a root (ECDSA P-256) in DIR")
	fmt.Fprintln(w, "("+meshca.RootCertFile+", "+meshca.RootKeyFile+"). 'issue' signs a workload certificate")
	fmt.Fprintln(w, "with the identity spiffe://<trust domain>/ns/NS/sa/SA and writes "+meshca.CertFile+",")
	fmt.Fprintln(w, meshca.KeyFile+" and "+meshca.RootCertFile+" into the --out directory, the layout Istio mounts.")
}

// runCA dispatches `michi ca init` and `michi ca issue`.
func runCA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		caUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "init":
		return caInit(args[1:], stdout, stderr)
	case "issue":
		return caIssue(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		caUsage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "michi ca: unknown subcommand %q\n\n", args[0])
	caUsage(stderr)
	return exitUsage
}

// parseFlags parses a subcommand's flags the way the other commands do:
// help to stdout, mistakes to stderr with exit 2. It returns -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			caUsage(stdout)
			fmt.Fprintln(stdout)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return exitOK
		}
		caUsage(stderr)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage
	}
	return -1
}

func caInit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("michi ca init", flag.ContinueOnError)
	var (
		dir         = fs.String("dir", "", "directory for the CA's root certificate and key (created)")
		trustDomain = fs.String("trust-domain", meshca.DefaultTrustDomain, "SPIFFE trust domain of the mesh")
		ttl         = fs.Duration("ttl", meshca.DefaultRootTTL, "lifetime of the root certificate")
	)
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "michi ca init: --dir is required")
		return exitUsage
	}
	ca, err := meshca.Init(*dir, meshca.InitOptions{TrustDomain: *trustDomain, TTL: *ttl})
	if err != nil {
		fmt.Fprintf(stderr, "michi ca init: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "created mesh root in %s: trust domain %s, expires %s\n",
		*dir, ca.TrustDomain, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	return exitOK
}

func caIssue(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("michi ca issue", flag.ContinueOnError)
	var (
		dir       = fs.String("dir", "", "the CA directory made by 'michi ca init'")
		namespace = fs.String("namespace", "", "the workload's namespace")
		sa        = fs.String("service-account", "", "the workload's service account")
		out       = fs.String("out", "", "directory to write "+meshca.CertFile+", "+meshca.KeyFile+" and "+meshca.RootCertFile+" to (created)")
		ttl       = fs.Duration("ttl", meshca.DefaultWorkloadTTL, "lifetime of the certificate (capped by the root's)")
		dns       dnsNames
	)
	fs.Var(&dns, "dns", "extra DNS SAN (repeatable)")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	for _, req := range []struct{ name, v string }{{"--dir", *dir}, {"--namespace", *namespace}, {"--service-account", *sa}, {"--out", *out}} {
		if req.v == "" {
			fmt.Fprintf(stderr, "michi ca issue: %s is required\n", req.name)
			return exitUsage
		}
	}
	ca, err := meshca.Load(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "michi ca issue: loading the CA: %v\n", err)
		return exitFail
	}
	w, err := ca.IssueWorkload(meshca.WorkloadOptions{Namespace: *namespace, ServiceAccount: *sa, DNSNames: []string(dns), TTL: *ttl})
	if err != nil {
		fmt.Fprintf(stderr, "michi ca issue: %v\n", err)
		return exitFail
	}
	if err := w.WriteFiles(*out); err != nil {
		fmt.Fprintf(stderr, "michi ca issue: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "issued %s to %s: expires %s\n", w.ID, filepath.Join(*out, meshca.CertFile), w.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return exitOK
}

// dnsNames is the repeatable --dns flag.
type dnsNames []string

func (d *dnsNames) String() string { return strings.Join(*d, ",") }

func (d *dnsNames) Set(v string) error {
	if v == "" {
		return errors.New("DNS name must not be empty")
	}
	*d = append(*d, v)
	return nil
}
