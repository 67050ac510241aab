package compile

import (
	"fmt"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/routing"
)

// cors translates a CorsPolicy (istio route.go TranslateCORSPolicy).
// allowOrigins wins over the deprecated exact-only allowOrigin; lists are
// joined with ","; maxAge is whole seconds. Preflights whose origin does not
// match are forwarded upstream unless unmatchedPreflights is IGNORE.
func cors(in *networking.CorsPolicy) (*routing.CORS, []fieldProblem) {
	if in == nil {
		return nil, nil
	}
	var problems []fieldProblem
	out := &routing.CORS{
		AllowMethods:                 strings.Join(in.AllowMethods, ","),
		AllowHeaders:                 strings.Join(in.AllowHeaders, ","),
		ExposeHeaders:                strings.Join(in.ExposeHeaders, ","),
		ForwardNotMatchingPreflights: in.UnmatchedPreflights != networking.CorsPolicy_IGNORE,
	}
	if in.AllowOrigins != nil {
		for i, o := range in.AllowOrigins {
			var kind routing.MatchKind
			var value string
			switch m := o.GetMatchType().(type) {
			case *networking.StringMatch_Exact:
				kind, value = routing.MatchExact, m.Exact
			case *networking.StringMatch_Prefix:
				kind, value = routing.MatchPrefix, m.Prefix
			case *networking.StringMatch_Regex:
				kind, value = routing.MatchRegex, m.Regex
			default:
				// Istio's ConvertToEnvoyMatches skips an empty match.
				continue
			}
			sm, err := routing.NewStringMatch(kind, value, false)
			if err != nil {
				problems = append(problems, fieldProblem{fmt.Sprintf("allowOrigins[%d]", i), err.Error() + "; the origin is ignored"})
				continue
			}
			out.AllowOrigins = append(out.AllowOrigins, sm)
		}
	} else {
		for _, o := range in.AllowOrigin { // deprecated
			out.AllowOrigins = append(out.AllowOrigins, routing.MustStringMatch(routing.MatchExact, o, false))
		}
	}
	if in.MaxAge != nil {
		out.MaxAge = strconv.FormatInt(in.MaxAge.GetSeconds(), 10)
	}
	if in.AllowCredentials != nil {
		v := in.AllowCredentials.GetValue()
		out.AllowCredentials = &v
	}
	return out, problems
}
