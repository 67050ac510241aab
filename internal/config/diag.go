package config

import (
	"fmt"
	"sort"
	"strings"
)

// Severity grades a Diagnostic.
type Severity string

const (
	// Error means the configuration cannot be applied as written.
	Error Severity = "error"
	// Warning means the configuration applies but traffic may not go where
	// the author expects (Istio would silently accept it).
	Warning Severity = "warning"
	// Info is a note that changes nothing, such as a skipped kind.
	Info Severity = "info"
)

// Diagnostic is one finding about the configuration. Every finding names
// the file and line, the resource, and the field path it is about, so that
// a user can go straight to the offending YAML.
type Diagnostic struct {
	File      string   `json:"file"`
	Line      int      `json:"line"`
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Field     string   `json:"field"`
	Severity  Severity `json:"severity"`
	Message   string   `json:"message"`
}

// String renders the finding as `FILE:LINE: Kind namespace/name: field: message`.
// Warnings and infos carry their severity in front of the message; errors
// do not, so that an error line reads like a compiler error.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		if d.Line > 0 {
			fmt.Fprintf(&b, ":%d", d.Line)
		}
		b.WriteString(": ")
	}
	if d.Kind != "" {
		fmt.Fprintf(&b, "%s %s/%s: ", d.Kind, d.Namespace, d.Name)
	}
	if d.Field != "" {
		b.WriteString(d.Field)
		b.WriteString(": ")
	}
	if d.Severity != Error && d.Severity != "" {
		b.WriteString(string(d.Severity))
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is a list of findings.
type Diagnostics []Diagnostic

// HasErrors reports whether any finding is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns only the error findings.
func (ds Diagnostics) Errors() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == Error {
			out = append(out, d)
		}
	}
	return out
}

// Sort orders findings by file, line, resource and field, so that output
// is stable whatever order the checks ran in.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Message < b.Message
	})
}

// Reporter collects findings about one resource, filling in the file, line
// and resource identity so that checks only state the field and message.
type Reporter struct {
	res   *Resource
	diags *Diagnostics
}

// NewReporter returns a Reporter that appends findings about r to diags.
func NewReporter(r *Resource, diags *Diagnostics) *Reporter {
	return &Reporter{res: r, diags: diags}
}

// Errorf records an error at field.
func (rp *Reporter) Errorf(field, format string, args ...any) {
	rp.add(Error, field, format, args...)
}

// Warnf records a warning at field.
func (rp *Reporter) Warnf(field, format string, args ...any) {
	rp.add(Warning, field, format, args...)
}

// Infof records an informational note at field.
func (rp *Reporter) Infof(field, format string, args ...any) {
	rp.add(Info, field, format, args...)
}

func (rp *Reporter) add(sev Severity, field, format string, args ...any) {
	*rp.diags = append(*rp.diags, rp.res.Diagnostic(sev, field, fmt.Sprintf(format, args...)))
}
