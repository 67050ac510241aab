package routing

// L4Match is one compiled L4MatchAttributes or TLSMatchAttributes entry.
// Config-time conditions (sourceLabels, sourceNamespace, gateways) were
// applied by the compiler; what remains is checked per connection.
type L4Match struct {
	// SNIHosts are exact or "*.suffix" server names (TLS routes only).
	SNIHosts []string `json:"sniHosts,omitempty"`
	// DestinationSubnets are CIDRs the connection's destination must be in.
	DestinationSubnets []string `json:"destinationSubnets,omitempty"`
	// SourceSubnet is a CIDR the client address must be in (TCP only).
	SourceSubnet string `json:"sourceSubnet,omitempty"`
}

// TCPRoute is a compiled Istio TCPRoute on one port.
type TCPRoute struct {
	VirtualService string         `json:"virtualService,omitempty"`
	RuleIndex      int            `json:"ruleIndex"`
	Hosts          []string       `json:"hosts,omitempty"`   // the VirtualService hosts
	Matches        []L4Match      `json:"matches,omitempty"` // ORed; none = any
	Destinations   []*Destination `json:"destinations"`
	TotalWeight    uint32         `json:"totalWeight"`
}

// TLSRoute is a compiled Istio TLSRoute on one port, selected by SNI.
type TLSRoute struct {
	VirtualService string         `json:"virtualService,omitempty"`
	RuleIndex      int            `json:"ruleIndex"`
	Matches        []L4Match      `json:"matches"`
	Destinations   []*Destination `json:"destinations"`
	TotalWeight    uint32         `json:"totalWeight"`
}
