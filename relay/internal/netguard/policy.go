package netguard

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Policy lists destinations an operator explicitly allowed despite being in
// a blocked class (typically a receiver on localhost or a private network).
// Each entry opens every port of its addresses or names, or one port. The
// zero value and a nil *Policy allow nothing extra. A Policy is immutable
// after ParseAllowlist and safe for concurrent use.
type Policy struct {
	prefixes []prefixRule
	hosts    map[hostRule]struct{} // exact names, lower-case, no trailing dot
	suffixes []suffixRule          // from "*.example.internal": ".example.internal"
}

// anyPort in a rule means every port.
const anyPort = 0

type prefixRule struct {
	prefix netip.Prefix
	port   uint16
}

type hostRule struct {
	name string
	port uint16
}

type suffixRule struct {
	suffix string
	port   uint16
}

func (r prefixRule) String() string {
	if r.port == anyPort {
		return r.prefix.String()
	}
	if r.prefix.Addr().Is6() {
		return "[" + r.prefix.String() + "]:" + strconv.Itoa(int(r.port))
	}
	return r.prefix.String() + ":" + strconv.Itoa(int(r.port))
}

func withPort(name string, port uint16) string {
	if port == anyPort {
		return name
	}
	return name + ":" + strconv.Itoa(int(port))
}

// ParseAllowlist parses a comma-separated allowlist, as found in
// RELAY_ALLOWED_TARGETS. Each entry is one of:
//
//   - a CIDR: "127.0.0.0/8", "fd12::/64" (host bits are ignored);
//   - a bare IP, meaning just that address: "10.1.2.3", "::1";
//   - a hostname, matched exactly and case-insensitively against the host
//     in the webhook URL: "receiver.internal";
//   - a wildcard "*.example.internal", matching any name below
//     example.internal (but not example.internal itself);
//   - any of these with a port, which opens that port alone:
//     "127.0.0.1:9000", "10.0.0.0/8:443", "receiver.internal:8080",
//     "*.example.internal:8443", and for IPv6 in brackets, "[::1]:9000",
//     "[fd12::/64]:443".
//
// Prefer the forms with a port: "127.0.0.1" would open every port of the
// host, including the relay's own and PostgreSQL's.
//
// Whitespace around entries and empty entries are ignored, so an empty
// string yields a Policy that allows nothing extra. Errors name the entry.
//
// A hostname entry trusts whatever that name resolves to, including after a
// DNS change; prefer CIDRs when the receiver's address is stable.
func ParseAllowlist(s string) (*Policy, error) {
	p := &Policy{hosts: map[hostRule]struct{}{}}
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

// splitPort separates "x:port" and "[x]:port". A bare IPv6 address or CIDR
// (several colons, no brackets) has no port. ok reports whether a port was
// given.
func splitPort(entry string) (rest string, port uint16, bracketed bool, err error) {
	if strings.HasPrefix(entry, "[") {
		end := strings.Index(entry, "]")
		if end < 0 {
			return "", 0, false, fmt.Errorf("missing ']'")
		}
		after := entry[end+1:]
		if after == "" {
			return "", 0, false, fmt.Errorf("brackets are only for an IPv6 address with a port: write [addr]:port, or the address alone")
		}
		if !strings.HasPrefix(after, ":") {
			return "", 0, false, fmt.Errorf("unexpected %q after ']'", after)
		}
		port, err := parsePort(after[1:])
		return entry[1:end], port, true, err
	}
	if strings.Count(entry, ":") != 1 {
		return entry, anyPort, false, nil
	}
	host, ps, _ := strings.Cut(entry, ":")
	port, err = parsePort(ps)
	return host, port, false, err
}

// parsePort accepts 1-65535 in plain decimal, so that the canonical form
// (String) reads back the same.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("invalid port %q (1-65535)", s)
	}
	return uint16(n), nil
}

func (p *Policy) add(entry string) error {
	entry, port, bracketed, err := splitPort(entry)
	if err != nil {
		return err
	}
	if bracketed {
		// Brackets hold an IPv6 address or CIDR (which may be IPv4-mapped).
		if strings.Contains(entry, ".") && !strings.Contains(entry, ":") {
			return fmt.Errorf("brackets are only for IPv6; write an IPv4 address or CIDR as addr:port")
		}
	}
	if strings.Contains(entry, "/") {
		prefix, err := netip.ParsePrefix(entry)
		if err != nil {
			return fmt.Errorf("invalid CIDR: %w", err)
		}
		p.prefixes = append(p.prefixes, prefixRule{canonicalPrefix(prefix), port})
		return nil
	}
	if strings.Contains(entry, ":") || bracketed {
		// Only IPv6 literals contain a colon here; anything else would
		// silently become a hostname that never matches.
		addr, err := netip.ParseAddr(entry)
		if err != nil {
			return fmt.Errorf("invalid IPv6 address (URLs are not allowed; give a host, IP or CIDR, optionally with :port, IPv6 as [addr]:port): %w", err)
		}
		if addr.Zone() != "" {
			return fmt.Errorf("IPv6 zones are not supported")
		}
		p.prefixes = append(p.prefixes, prefixRule{canonicalPrefix(netip.PrefixFrom(addr, addr.BitLen())), port})
		return nil
	}
	if addr, err := netip.ParseAddr(entry); err == nil {
		p.prefixes = append(p.prefixes, prefixRule{canonicalPrefix(netip.PrefixFrom(addr, addr.BitLen())), port})
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
		p.suffixes = append(p.suffixes, suffixRule{"." + name, port})
	} else {
		p.hosts[hostRule{name, port}] = struct{}{}
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

// allows reports whether the policy explicitly allows ip or host on port
// (anyPort when the port is not known: then only entries without a port
// apply). ip must be unmapped and zone-less; host normalized.
func (p *Policy) allows(host string, ip netip.Addr, port uint16) bool {
	if p == nil {
		return false
	}
	portOK := func(rule uint16) bool { return rule == anyPort || (port != anyPort && rule == port) }
	for _, r := range p.prefixes {
		if portOK(r.port) && r.prefix.Contains(ip) {
			return true
		}
	}
	if host == "" {
		return false
	}
	if _, ok := p.hosts[hostRule{host, anyPort}]; ok {
		return true
	}
	if port != anyPort {
		if _, ok := p.hosts[hostRule{host, port}]; ok {
			return true
		}
	}
	for _, r := range p.suffixes {
		// len check: "*.example.internal" must not match ".example.internal".
		if portOK(r.port) && len(host) > len(r.suffix) && strings.HasSuffix(host, r.suffix) {
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
	for _, r := range p.prefixes {
		parts = append(parts, r.String())
	}
	for h := range p.hosts {
		parts = append(parts, withPort(h.name, h.port))
	}
	for _, r := range p.suffixes {
		parts = append(parts, withPort("*"+r.suffix, r.port))
	}
	// Map iteration order is random; sort for stable log lines.
	slices.Sort(parts[len(p.prefixes) : len(p.prefixes)+len(p.hosts)])
	return strings.Join(parts, ",")
}
