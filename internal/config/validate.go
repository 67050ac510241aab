package config

// ValidateOptions tunes per-resource validation.
type ValidateOptions struct {
	// ClusterDomain is used when resolving short host names.
	ClusterDomain string
}

// Validate checks every resource on its own, as Istio's admission webhook
// does, plus what Istio silently drops. Findings carry field paths.
func Validate(set *Set, opts ValidateOptions) Diagnostics {
	return nil
}
