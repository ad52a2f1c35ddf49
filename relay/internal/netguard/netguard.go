// Package netguard keeps relay's outbound webhook deliveries from being
// turned against the network relay runs in (SSRF). Webhook target URLs come
// from configuration that may be edited by less-trusted users, so a URL like
// http://169.254.169.254/ or http://localhost:5432/ must not be reachable
// unless an operator explicitly allowed it.
//
// The decision is made at connect time on the address actually being
// dialed (see Policy.DialContext), not on the URL: hostnames, alternative IP
// spellings (http://2130706433/, http://0177.0.0.1/) and DNS answers that
// change between a check and the connect (DNS rebinding) all end up as one
// concrete IP, and that is what gets checked.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// AllowlistEnv names the setting operators use to allow blocked targets; it
// appears in error messages so the fix is discoverable from a log line.
const AllowlistEnv = "RELAY_ALLOWED_TARGETS"

// ErrBlocked is wrapped by every refusal from Check and from the dial
// function, so callers can tell a policy refusal (permanent; do not retry)
// from a network failure with errors.Is(err, ErrBlocked).
var ErrBlocked = errors.New("netguard: destination blocked")

// BlockedError describes a refused destination. It matches ErrBlocked with
// errors.Is; use errors.As to get at the details.
type BlockedError struct {
	Host   string     // host as requested (a name or an IP literal), lower-cased
	Addr   netip.Addr // the address that would have been dialed
	Reason string     // the blocked class, e.g. "loopback"
}

func (e *BlockedError) Error() string {
	target := e.Addr.String()
	if e.Host != "" && e.Host != target {
		target = e.Host + " at " + target
	}
	return fmt.Sprintf("netguard: refusing to connect to %s (%s); add it to %s to allow",
		target, e.Reason, AllowlistEnv)
}

// Is reports whether target is ErrBlocked.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// DialContext returns a dial function for http.Transport.DialContext that
// refuses blocked destinations. The check runs in the dialer's Control hook,
// which the net package calls with the resolved "ip:port" for every address
// it attempts, right before connect(2); nothing can change the destination
// after that point.
//
// d is copied, not modified; nil means a zero net.Dialer. Any Control or
// ControlContext already set on d still runs after the check. DNS lookups
// are not affected: the resolver dials its servers with its own dialer.
//
// Two things can bypass this guard and must be avoided by the caller: an
// HTTP proxy (the guard would check the proxy, not the target, so set
// http.Transport.Proxy to nil) and http.Transport.DialTLSContext (which
// replaces DialContext for https).
func (p *Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var base net.Dialer
	if d != nil {
		base = *d
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch network {
		case "tcp", "tcp4", "tcp6":
		default:
			// Only TCP destinations carry an IP the policy can judge; unix
			// sockets and UDP are never legitimate webhook targets.
			return nil, fmt.Errorf("netguard: refusing %s connection to %q: only tcp is allowed: %w",
				network, addr, ErrBlocked)
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("netguard: parsing dial address %q: %w", addr, err)
		}

		dialer := base
		next, nextLegacy := base.ControlContext, base.Control
		dialer.Control = nil
		dialer.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				// Fail closed: an address we cannot parse is one we cannot
				// vouch for.
				return fmt.Errorf("netguard: parsing resolved address %q: %w", address, ErrBlocked)
			}
			if err := p.CheckAddrPort(host, ap); err != nil {
				return err
			}
			if next != nil {
				return next(ctx, network, address, c)
			}
			if nextLegacy != nil {
				return nextLegacy(network, address, c)
			}
			return nil
		}
		return dialer.DialContext(ctx, network, addr)
	}
}

// Check decides whether connecting to ip, reached by asking for host (a
// hostname or IP literal, without port; may be empty), is allowed when the
// port is not known: only allowlist entries without a port apply. It returns
// nil if allowed, otherwise an error wrapping ErrBlocked. A nil Policy allows
// nothing extra.
//
// The address is allowed if the policy's CIDRs contain it (IPv4-mapped IPv6
// addresses are compared as the IPv4 they map to), or if host matches an
// allowed hostname, or if it is in none of the blocked classes. Addresses
// that embed an IPv4 address (NAT64, 6to4) are judged by that IPv4 address.
func (p *Policy) Check(host string, ip netip.Addr) error {
	return p.check(host, ip, anyPort)
}

// CheckAddrPort is Check for a connection to a known port: entries with a
// port (such as "127.0.0.1:9000") allow that port alone, entries without one
// every port. The dial function uses it.
func (p *Policy) CheckAddrPort(host string, ap netip.AddrPort) error {
	return p.check(host, ap.Addr(), ap.Port())
}

func (p *Policy) check(host string, ip netip.Addr, port uint16) error {
	host = normalizeHost(host)
	if !ip.IsValid() {
		return &BlockedError{Host: host, Addr: ip, Reason: "invalid address"}
	}
	// Zones only qualify link-local addresses and would stop prefix matching.
	ip = ip.WithZone("").Unmap()

	if p.allows(host, ip, port) {
		return nil
	}
	if reason := blockedReason(ip); reason != "" {
		return &BlockedError{Host: host, Addr: ip, Reason: reason}
	}
	return nil
}

func normalizeHost(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	// Accept "[::1]" as well as "::1" so callers can pass a URL host.
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

type blockedRange struct {
	prefix netip.Prefix
	reason string
}

func mustPrefixes(specs ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(specs))
	for i, s := range specs {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Ordered so the most specific (and most alarming) reason is reported: the
// metadata addresses sit inside the link-local, CGNAT and ULA ranges.
var blockedRanges = func() []blockedRange {
	var out []blockedRange
	add := func(reason string, specs ...string) {
		for _, p := range mustPrefixes(specs...) {
			out = append(out, blockedRange{p, reason})
		}
	}
	// AWS/GCP/Azure/OCI, AWS over IPv6, Alibaba, and Azure's host endpoint
	// (WireServer: VM agent and extension configuration, public address space).
	add("cloud metadata", "169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32", "168.63.129.16/32")
	add("broadcast", "255.255.255.255/32")
	add("unspecified", "0.0.0.0/8", "::/128")
	add("loopback", "127.0.0.0/8", "::1/128")
	add("private", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
	add("link-local", "169.254.0.0/16", "fe80::/10")
	add("carrier-grade NAT", "100.64.0.0/10")
	add("benchmarking", "198.18.0.0/15")
	add("multicast", "224.0.0.0/4", "ff00::/8")
	add("reserved", "240.0.0.0/4")
	// Not in every SSRF list, but never a legitimate webhook receiver:
	// IETF protocol assignments and the documentation ranges.
	add("special-purpose", "192.0.0.0/24")
	add("documentation", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
	add("unique-local", "fc00::/7")
	add("site-local (deprecated)", "fec0::/10")
	// Teredo embeds an obfuscated client address and a server address;
	// tunnelling has no place in webhook delivery, so refuse it outright.
	add("Teredo", "2001::/32")
	add("local-use NAT64", "64:ff9b:1::/48")
	return out
}()

var (
	nat64Prefix   = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour     = netip.MustParsePrefix("2002::/16")
	globalUnicast = netip.MustParsePrefix("2000::/3")
)

// blockedReason returns why ip (already unmapped, zone-less) is blocked, or
// "" if it is a public address.
func blockedReason(ip netip.Addr) string {
	for _, r := range blockedRanges {
		if r.prefix.Contains(ip) {
			return r.reason
		}
	}
	if !ip.Is6() {
		return ""
	}
	b := ip.As16()
	// Translation/tunnel prefixes end up at an IPv4 destination; that
	// destination is what matters.
	switch {
	case nat64Prefix.Contains(ip):
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if r := blockedReason(v4); r != "" {
			return fmt.Sprintf("NAT64 address embedding %s, %s", v4, r)
		}
		return ""
	case sixToFour.Contains(ip):
		v4 := netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		if r := blockedReason(v4); r != "" {
			return fmt.Sprintf("6to4 address embedding %s, %s", v4, r)
		}
		return ""
	case !globalUnicast.Contains(ip):
		// Everything outside 2000::/3 (other than the cases above) is
		// unassigned or special-purpose, e.g. the deprecated
		// IPv4-compatible ::a.b.c.d form and the 100::/64 discard prefix.
		return "reserved IPv6"
	}
	return ""
}
