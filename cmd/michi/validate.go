package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

func init() {
	register("validate", "check configuration files and report every problem", runValidate)
}

// pathList is a repeatable flag.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(v string) error {
	if v == "" {
		return errors.New("path must not be empty")
	}
	*p = append(*p, v)
	return nil
}

// runValidate loads, validates and analyzes configuration offline, the
// way `michi run` would see it, and prints every finding. It exits 0 when
// there are no errors (warnings allowed), 1 on any error, 2 on a usage
// error.
func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("michi validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		paths         pathList
		namespace     = fs.String("namespace", "default", "namespace of resources that do not set metadata.namespace")
		clusterDomain = fs.String("cluster-domain", config.DefaultClusterDomain, "Kubernetes DNS domain, for short host names")
		output        = fs.String("o", "text", "output format: text or json")
	)
	fs.Var(&paths, "c", "configuration file or directory, walked recursively (repeatable)")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: michi validate -c PATH [-c PATH ...] [--namespace default] [--cluster-domain cluster.local] [-o text|json]")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Checks Istio VirtualService, DestinationRule, ServiceEntry, WorkloadEntry and")
		fmt.Fprintln(w, "Gateway resources and prints every problem with its file, line and field.")
		fmt.Fprintln(w, "Exits 0 when there are no errors, 1 when there are, 2 on a usage error.")
		fmt.Fprintln(w)
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	// The flag package prints its own error line; the usage goes to
	// stdout when asked for and to stderr after a mistake.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		usage(stderr)
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "michi validate: unexpected argument %q; pass paths with -c\n", fs.Arg(0))
		return exitUsage
	case len(paths) == 0:
		fmt.Fprintln(stderr, "michi validate: no configuration given; pass at least one -c PATH")
		return exitUsage
	case *output != "text" && *output != "json":
		fmt.Fprintf(stderr, "michi validate: unknown output format %q; use text or json\n", *output)
		return exitUsage
	}

	diags, resources, files := validatePaths(paths, *namespace, *clusterDomain)

	if *output == "json" {
		if diags == nil {
			diags = config.Diagnostics{} // an empty array, not null
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(diags); err != nil {
			fmt.Fprintf(stderr, "michi validate: %v\n", err)
			return exitFail
		}
	} else {
		for _, d := range diags {
			fmt.Fprintln(stdout, d.String())
		}
	}
	fmt.Fprintln(stderr, summary(diags, resources, files))
	if diags.HasErrors() {
		return exitFail
	}
	return exitOK
}

// validatePaths runs the offline pipeline: load, per-resource validation,
// the registry, and the cross-resource analysis, for a mesh proxy in
// namespace. It returns the sorted findings and how many resources and
// files were read.
func validatePaths(paths []string, namespace, clusterDomain string) (diags config.Diagnostics, resources, files int) {
	if fl, err := config.ListFiles(paths); err == nil {
		files = len(fl)
	}
	set, diags := config.Load(paths, config.LoadOptions{DefaultNamespace: namespace})
	diags = append(diags, config.Validate(set, config.ValidateOptions{ClusterDomain: clusterDomain})...)
	reg := registry.Build(set, clusterDomain)
	diags = append(diags, compile.Analyze(set, reg, compile.Options{
		Proxy:         routing.Proxy{Role: routing.RoleMesh, Namespace: namespace},
		ClusterDomain: clusterDomain,
	})...)
	diags.Sort()
	return diags, len(set.Resources), files
}

// summary is the last line: "2 errors, 1 warning in 14 resources from 5
// files".
func summary(diags config.Diagnostics, resources, files int) string {
	var errs, warns int
	for _, d := range diags {
		switch d.Severity {
		case config.Error:
			errs++
		case config.Warning:
			warns++
		}
	}
	return fmt.Sprintf("%s, %s in %s from %s", plural(errs, "error"), plural(warns, "warning"), plural(resources, "resource"), plural(files, "file"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
