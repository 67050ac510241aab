package telemetry

// Istio's canonical-service labels (pkg/model/labels, "Canonical Service"
// in the metrics reference). A workload's canonical name and revision fall
// back to the Kubernetes recommended labels, then to app and version.
const (
	labelCanonicalName     = "service.istio.io/canonical-name"
	labelCanonicalRevision = "service.istio.io/canonical-revision"
	labelK8sName           = "app.kubernetes.io/name"
	labelK8sVersion        = "app.kubernetes.io/version"
	labelApp               = "app"
	labelVersion           = "version"
)

// unknown is what Istio reports for a label it has no value for.
const unknown = "unknown"

// workloadIdentity is how Istio's stats extension names one side of a
// request, derived from that workload's labels.
type workloadIdentity struct {
	app, version                        string
	canonicalService, canonicalRevision string
}

// identityFromLabels derives a workload's app, version and canonical
// service from its labels the way Istio's sidecar injector and stats
// extension do: app and version prefer the plain labels, the canonical
// service prefers the explicit service.istio.io labels, and a workload
// without any revision label is at revision "latest". workload is the
// last fallback for the canonical service name.
func identityFromLabels(labels map[string]string, workload string) workloadIdentity {
	id := workloadIdentity{
		app:               first(labels[labelApp], labels[labelK8sName]),
		version:           first(labels[labelVersion], labels[labelK8sVersion]),
		canonicalService:  first(labels[labelCanonicalName], labels[labelK8sName], labels[labelApp], workload),
		canonicalRevision: first(labels[labelCanonicalRevision], labels[labelK8sVersion], labels[labelVersion], "latest"),
	}
	return id
}

// SetEndpointLabels fills the destination app, version and canonical
// service from the labels of the endpoint the request went to, which is
// what Istio's client-side stats learn from the peer's metadata. Labels
// the endpoint lacks leave the fields empty, reported as "unknown".
func (r *Record) SetEndpointLabels(labels map[string]string) {
	id := identityFromLabels(labels, r.DestinationWorkload)
	r.DestinationApp = id.app
	r.DestinationVersion = id.version
	r.DestinationCanonicalService = id.canonicalService
	r.DestinationCanonicalRevision = id.canonicalRevision
}

// first returns the first non-empty value.
func first(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// orUnknown returns v, or "unknown" when v is empty.
func orUnknown(v string) string {
	if v == "" {
		return unknown
	}
	return v
}
