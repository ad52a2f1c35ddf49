package netguard

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Policy lists destinations an operator explicitly allowed despite being in
// a blocked class (typically a receiver on localhost or a private network).
// The zero value and a nil *Policy allow nothing extra. A Policy is
// immutable after ParseAllowlist and safe for concurrent use.
type Policy struct {
	prefixes []netip.Prefix
	hosts    map[string]struct{} // exact names, lower-case, no trailing dot
	suffixes []string            // from "*.example.internal": ".example.internal"
}

// ParseAllowlist parses a comma-separated allowlist, as found in
// RELAY_ALLOWED_TARGETS. Each entry is one of:
//
//   - a CIDR: "127.0.0.0/8", "fd12::/64" (host bits are ignored);
//   - a bare IP, meaning just that address: "10.1.2.3", "::1";
//   - a hostname, matched exactly and case-insensitively against the host
//     in the webhook URL: "receiver.internal";
//   - a wildcard "*.example.internal", matching any name below
//     example.internal (but not example.internal itself).
//
// Whitespace around entries and empty entries are ignored, so an empty
// string yields a Policy that allows nothing extra. Errors name the entry.
//
// A hostname entry trusts whatever that name resolves to, including after a
// DNS change; prefer CIDRs when the receiver's address is stable.
func ParseAllowlist(s string) (*Policy, error) {
	p := &Policy{hosts: map[string]struct{}{}}
	for _, raw := range strings.Split(s, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			continue
		}
		if err := p.add(entry); err != nil {
			return nil, fmt.Errorf("netguard: %s entry %q: %w", AllowlistEnv, entry, err)
		}
	}
	return p, nil
}

func (p *Policy) add(entry string) error {
	if strings.Contains(entry, "/") {
		prefix, err := netip.ParsePrefix(entry)
		if err != nil {
			return fmt.Errorf("invalid CIDR: %w", err)
		}
		p.prefixes = append(p.prefixes, canonicalPrefix(prefix))
		return nil
	}
	if strings.Contains(entry, ":") {
		// Only IPv6 literals contain a colon; a "host:port" entry would
		// otherwise silently become a hostname that never matches.
		addr, err := netip.ParseAddr(entry)
		if err != nil {
			return fmt.Errorf("invalid IPv6 address (ports and URLs are not allowed; give a host, IP or CIDR): %w", err)
		}
		if addr.Zone() != "" {
			return fmt.Errorf("IPv6 zones are not supported")
		}
		p.prefixes = append(p.prefixes, canonicalPrefix(netip.PrefixFrom(addr, addr.BitLen())))
		return nil
	}
	if addr, err := netip.ParseAddr(entry); err == nil {
		p.prefixes = append(p.prefixes, canonicalPrefix(netip.PrefixFrom(addr, addr.BitLen())))
		return nil
	}

	name := strings.TrimSuffix(strings.ToLower(entry), ".")
	wildcard := false
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		wildcard, name = true, rest
	}
	if err := validateHostname(name); err != nil {
		return err
	}
	if wildcard {
		p.suffixes = append(p.suffixes, "."+name)
	} else {
		p.hosts[name] = struct{}{}
	}
	return nil
}

// canonicalPrefix masks host bits and rewrites IPv4-mapped IPv6 prefixes
// (::ffff:10.0.0.0/104) as IPv4 ones, because Check compares the unmapped
// address; otherwise such an entry could never match.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// validateHostname accepts LDH names (plus '_', which appears in internal
// DNS) and rejects anything a resolver might read as an IP address, such as
// "127.1", "2130706433" or "0x7f.1": allowing such a "name" would not mean
// what the operator thinks, since it matches only that literal URL host.
func validateHostname(name string) error {
	if name == "" {
		return fmt.Errorf("empty hostname")
	}
	if len(name) > 253 {
		return fmt.Errorf("hostname longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if label == "" {
			return fmt.Errorf("hostname has an empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("hostname label %q longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("hostname label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("invalid character %q in hostname (only letters, digits, '-', '_'; write IDNs in punycode; '*' only as a leading '*.')", c)
			}
		}
	}
	if last := labels[len(labels)-1]; isNumericLabel(last) {
		return fmt.Errorf("looks like an IP address in non-standard notation; write it as a dotted-quad IPv4, IPv6 or CIDR")
	}
	return nil
}

// isNumericLabel reports whether a label is decimal or 0x-hex, the forms
// inet_aton-style parsers accept as (part of) an IPv4 address. Real TLDs are
// never numeric.
func isNumericLabel(l string) bool {
	digits := l
	isHex := false
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x') {
		digits, isHex = l[2:], true
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c >= '0' && c <= '9' || isHex && c >= 'a' && c <= 'f' {
			continue
		}
		return false
	}
	return true
}

// allows reports whether the policy explicitly allows ip or host. ip must be
// unmapped and zone-less; host normalized.
func (p *Policy) allows(host string, ip netip.Addr) bool {
	if p == nil {
		return false
	}
	for _, prefix := range p.prefixes {
		if prefix.Contains(ip) {
			return true
		}
	}
	if host == "" {
		return false
	}
	if _, ok := p.hosts[host]; ok {
		return true
	}
	for _, suffix := range p.suffixes {
		// len check: "*.example.internal" must not match ".example.internal".
		if len(host) > len(suffix) && strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return false
}

// String renders the policy in ParseAllowlist syntax, canonicalized, for
// logging the effective configuration at startup.
func (p *Policy) String() string {
	if p == nil {
		return ""
	}
	var parts []string
	for _, prefix := range p.prefixes {
		parts = append(parts, prefix.String())
	}
	for host := range p.hosts {
		parts = append(parts, host)
	}
	for _, suffix := range p.suffixes {
		parts = append(parts, "*"+suffix)
	}
	// Map iteration order is random; sort for stable log lines.
	slices.Sort(parts[len(p.prefixes) : len(p.prefixes)+len(p.hosts)])
	return strings.Join(parts, ",")
}
