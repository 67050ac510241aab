package compile

import (
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/routing"
)

// percentPerMillion converts an Istio Percent (0-100, double) to a share
// per million, truncating as Istio does (route.go
// translatePercentToFractionalPercent: value*10000 of MILLION).
func percentPerMillion(p *networking.Percent) uint32 {
	return clampPerMillion(p.GetValue() * 10000)
}

// intPercentPerMillion converts a deprecated integer percentage.
func intPercentPerMillion(p int64) uint32 {
	return clampPerMillion(float64(p) * 10000)
}

func clampPerMillion(v float64) uint32 {
	switch {
	case v <= 0:
		return 0
	case v >= routing.Million:
		return routing.Million
	}
	return uint32(v)
}

// fault translates an HTTPFaultInjection (istio route.go TranslateFault).
// A delay without percentage uses the deprecated integer percent, and a
// delay or abort that applies to no request is left out. An abort without
// percentage aborts nothing, as Envoy then has no fraction to apply.
// Problems are returned as field-relative findings for the caller to
// report.
func fault(in *networking.HTTPFaultInjection) (*routing.Fault, []fieldProblem) {
	if in == nil {
		return nil, nil
	}
	var problems []fieldProblem
	out := &routing.Fault{}
	if d := in.Delay; d != nil {
		per := intPercentPerMillion(int64(d.Percent)) // deprecated int percent
		if d.Percentage != nil {
			per = percentPerMillion(d.Percentage)
		}
		switch t := d.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			if per > 0 {
				out.Delay = &routing.FaultDelay{Duration: t.FixedDelay.AsDuration(), PerMillion: per}
			}
		default:
			problems = append(problems, fieldProblem{"delay", "only fixedDelay is supported (as in Istio); the delay is ignored"})
		}
	}
	if a := in.Abort; a != nil {
		per := uint32(0)
		if a.Percentage != nil {
			per = percentPerMillion(a.Percentage)
		}
		var abort *routing.FaultAbort
		switch t := a.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			abort = &routing.FaultAbort{HTTPStatus: int(t.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			var code codes.Code
			if err := code.UnmarshalJSON([]byte(strconv.Quote(t.GrpcStatus))); err != nil {
				problems = append(problems, fieldProblem{"abort.grpcStatus", fmt.Sprintf("unknown gRPC status %q; the abort is ignored", t.GrpcStatus)})
				break
			}
			abort = &routing.FaultAbort{GRPCStatus: int(code), IsGRPC: true}
		default:
			problems = append(problems, fieldProblem{"abort", "only httpStatus and grpcStatus aborts are supported (as in Istio); the abort is ignored"})
		}
		if abort != nil && per > 0 {
			abort.PerMillion = per
			out.Abort = abort
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil, problems
	}
	return out, problems
}
