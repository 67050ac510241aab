package compile

import (
	"net/http"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/routing"
)

// backoffCap is Envoy's cap on the retry back-off: ten times the base
// interval (router_filter.rst "x-envoy-max-retries" back-off).
const backoffCap = 10

// retryPolicy translates an HTTPRetry (istio route/retry/retry.go
// ConvertPolicy). Without a policy Istio's default applies; attempts 0
// disables retries. consistentHash drops the previous-hosts predicate from
// the default, since retrying on another host would break affinity, unless
// the policy asks for it explicitly. Unknown retryOn tokens are returned so
// the caller can report them.
func retryPolicy(in *networking.HTTPRetry, consistentHash bool) (*routing.RetryPolicy, []string) {
	out := routing.DefaultRetryPolicy()
	if consistentHash {
		out.RetryOtherHosts = false
		out.HostSelectionAttempts = 0
	}
	if in == nil {
		return out, nil
	}
	if in.Attempts <= 0 {
		return nil, nil
	}
	out.Default = false
	out.NumRetries = uint32(in.Attempts)

	var unknown []string
	if in.RetryOn != "" {
		var on routing.RetryOn
		var codes []int
		for _, tok := range strings.Split(in.RetryOn, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" {
				continue
			}
			// Any integer that is an HTTP status is a retriable status code
			// (retry.go parseRetryOn).
			if code, err := strconv.Atoi(tok); err == nil && http.StatusText(code) != "" {
				codes = append(codes, code)
				continue
			}
			c, ok := routing.RetryOnTokens[tok]
			if !ok {
				unknown = append(unknown, tok)
				continue
			}
			on |= c
		}
		if len(codes) > 0 {
			on |= routing.RetryRetriableStatusCodes
		}
		out.RetryOn = on
		out.RetriableStatusCodes = codes
	}
	if d := in.PerTryTimeout; d != nil {
		out.PerTryTimeout = d.AsDuration()
	}
	if b := in.Backoff; b != nil {
		out.BackoffBase = b.AsDuration()
		out.BackoffMax = backoffCap * out.BackoffBase
	}
	if p := in.RetryIgnorePreviousHosts; p != nil {
		out.RetryOtherHosts = p.GetValue()
		out.HostSelectionAttempts = 0
		if out.RetryOtherHosts {
			out.HostSelectionAttempts = routing.DefaultRetryPolicy().HostSelectionAttempts
		}
	}
	out.RetryRemoteLocalities = in.RetryRemoteLocalities.GetValue()
	return out, unknown
}
