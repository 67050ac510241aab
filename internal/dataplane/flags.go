package dataplane

import "strings"

// flags is a set of Envoy response flags.
type flags uint32

// Envoy response flags (envoy access_log usage.rst %RESPONSE_FLAGS%), in
// the order Envoy prints them.
const (
	flagUH  flags = 1 << iota // no healthy upstream
	flagUF                    // upstream connection failure
	flagUO                    // upstream overflow (circuit breaking)
	flagNR                    // no route
	flagURX                   // retry limit reached
	flagNC                    // cluster not found
	flagDC                    // downstream connection termination
	flagUT                    // upstream request timeout
	flagUR                    // upstream remote reset
	flagUC                    // upstream connection termination
	flagDI                    // delay injected
	flagFI                    // fault abort injected
	flagDPE                   // downstream protocol error
	flagUPE                   // upstream protocol error
)

var flagNames = []struct {
	f    flags
	name string
}{
	{flagUH, "UH"}, {flagUF, "UF"}, {flagUO, "UO"}, {flagNR, "NR"}, {flagURX, "URX"},
	{flagNC, "NC"}, {flagDC, "DC"}, {flagUT, "UT"}, {flagUR, "UR"}, {flagUC, "UC"},
	{flagDI, "DI"}, {flagFI, "FI"}, {flagDPE, "DPE"}, {flagUPE, "UPE"},
}

// String renders the flags comma-separated, "-" when none, as Envoy logs
// them.
func (f flags) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for _, n := range flagNames {
		if f&n.f != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.name)
		}
	}
	return b.String()
}

// flagFromUpstream maps an upstream.Error flag to the set.
func flagFromUpstream(s string) flags {
	for _, n := range flagNames {
		if n.name == s {
			return n.f
		}
	}
	return 0
}
