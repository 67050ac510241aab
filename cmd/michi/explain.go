package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/engine"
	"github.com/michi-mesh/michi/internal/explain"
	"github.com/michi-mesh/michi/internal/routing"
)

func init() {
	register("explain", "show which rule, subset and endpoint a request would take, and why", runExplain)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ", ") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// runExplain compiles the configuration the way `michi run` does and
// explains one request against it. It exits 0 when the request finds a
// route (even one that fails, such as 503 NC or the REGISTRY_ONLY 502), 1
// when it would get 404 or the configuration is invalid, 2 on a usage
// error.
func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("michi explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		paths          pathList
		headers        stringList
		gateways       stringList
		labels         = labelMap{}
		namespace      = fs.String("namespace", "default", "the proxy's namespace (short names, exportTo, sourceNamespace); also given to resources without one")
		outboundPolicy = fs.String("outbound-policy", string(routing.AllowAny), "Istio outboundTrafficPolicy for unknown hosts: ALLOW_ANY or REGISTRY_ONLY")
		clusterDomain  = fs.String("cluster-domain", config.DefaultClusterDomain, "Kubernetes DNS domain, for short host names")
		sourceIP       = fs.String("source-ip", "", "the client's IP address, for source-IP consistent hashing")
		output         = fs.String("o", "text", "output format: text or json")
	)
	fs.Var(&paths, "c", "configuration file or directory, walked recursively (repeatable)")
	fs.Var(labels, "labels", "the proxy's workload labels, k=v,k=v (sourceLabels, gateway selectors)")
	fs.Var(&gateways, "gateway", "explain for a gateway implementing this Gateway, NS/NAME (repeatable); the default is a sidecar")
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable); 'Host: ...' replaces the URL's host for routing")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: michi explain -c PATH [--namespace NS] [--labels k=v] [--gateway NS/NAME] [-H 'k: v' ...] [-o json] 'METHOD URL'")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Shows, step by step, what the proxy does with one request: the virtual host and")
		fmt.Fprintln(w, "the domains it matched, every rule tried and why it matched or not, the action,")
		fmt.Fprintln(w, "the cluster and its endpoints, the traffic policy, and the timeout, retries,")
		fmt.Fprintln(w, "faults, mirrors, CORS and header edits. The configuration is compiled exactly as")
		fmt.Fprintln(w, "`michi run` compiles it. The request is 'METHOD URL' (METHOD defaults to GET)")
		fmt.Fprintln(w, "with an absolute URL; its port (80 by default) is the listener port.")
		fmt.Fprintln(w, "Exits 0 when a route is found, 1 when the request would get 404 or the")
		fmt.Fprintln(w, "configuration is invalid, 2 on a usage error.")
		fmt.Fprintln(w)
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fs.Usage = func() {}
	// Flags may come before or after the request.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage(stdout)
				return exitOK
			}
			usage(stderr)
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "michi explain: "+format+"\n", a...)
		return exitUsage
	}
	switch {
	case len(paths) == 0:
		return fail("no configuration given; pass at least one -c PATH")
	case *output != "text" && *output != "json":
		return fail("unknown output format %q; use text or json", *output)
	case *outboundPolicy != string(routing.AllowAny) && *outboundPolicy != string(routing.RegistryOnly):
		return fail("--outbound-policy %q: want ALLOW_ANY or REGISTRY_ONLY", *outboundPolicy)
	}
	for _, g := range gateways {
		ns, name, ok := strings.Cut(g, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fail("--gateway %q: want NAMESPACE/NAME", g)
		}
	}
	method, rawURL, err := explain.ParseTarget(positional)
	if err != nil {
		return fail("%v", err)
	}
	req, err := explain.NewRequest(method, rawURL, headers, *sourceIP)
	if err != nil {
		return fail("%v", err)
	}

	table, warnings, err := explain.Load(explain.Config{
		Paths:          paths,
		Namespace:      *namespace,
		Labels:         labels,
		Gateways:       gateways,
		OutboundPolicy: routing.OutboundPolicy(*outboundPolicy),
		ClusterDomain:  *clusterDomain,
	})
	if err != nil {
		var rejected *engine.RejectedError
		if !errors.As(err, &rejected) {
			fmt.Fprintln(stderr, "michi explain:", err)
			return exitFail
		}
		for _, d := range rejected.Findings {
			fmt.Fprintln(stderr, d.String())
		}
		fmt.Fprintf(stderr, "michi explain: the configuration is invalid (%s), so `michi run` would not start on it; nothing to explain\n",
			plural(len(rejected.Findings.Errors()), "error"))
		return exitFail
	}
	for _, d := range warnings {
		fmt.Fprintln(stderr, d.String())
	}

	res, err := explain.Explain(table, req)
	if err != nil {
		return fail("%v", err)
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		err = enc.Encode(res)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "michi explain:", err)
		return exitFail
	}
	if !res.Routed() {
		return exitFail
	}
	return exitOK
}
