package netguard_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/netguard"
)

// countingServer is a real server on 127.0.0.1 that every blocked request
// is aimed at, so "blocked" is proven by it never seeing a request rather
// than by trusting the error value.
type countingServer struct {
	*httptest.Server
	hits atomic.Int64
	port string
}

func newCountingServer(t *testing.T, network, addr string) *countingServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	s := &countingServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		fmt.Fprint(w, "reached")
	}))
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	_, s.port, _ = net.SplitHostPort(ln.Addr().String())
	return s
}

func guardedClient(p *netguard.Policy, d *net.Dialer) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			// Proxy deliberately nil: with a proxy the guard would vet the
			// proxy's address instead of the target's.
			DialContext:       p.DialContext(d),
			DisableKeepAlives: true,
		},
	}
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// fakeResolver returns a resolver whose DNS server, a tiny UDP responder on
// 127.0.0.1, answers every A query (or AAAA, for an IPv6 answer) with answer.
// This stands in for an attacker-controlled DNS name.
func fakeResolver(t *testing.T, answer netip.Addr) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting fake DNS: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n], answer); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", pc.LocalAddr().String())
		},
	}
}

// dnsAnswer builds a response to query q (RFC 1035 wire format) that echoes
// the question and answers it with addr if the query type fits.
func dnsAnswer(q []byte, addr netip.Addr) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	i++ // root label
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	qEnd := i + 4

	resp := []byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0}
	resp = append(resp, q[12:qEnd]...)
	var rdata []byte
	switch {
	case qtype == 1 && addr.Is4():
		a := addr.As4()
		rdata = a[:]
	case qtype == 28 && addr.Is6():
		a := addr.As16()
		rdata = a[:]
	}
	if rdata != nil {
		resp[7] = 1 // ANCOUNT
		resp = append(resp, 0xc0, 0x0c, byte(qtype>>8), byte(qtype), 0, 1, 0, 0, 0, 60, 0, byte(len(rdata)))
		resp = append(resp, rdata...)
	}
	return resp
}

func TestCheckBlockedClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ip     string
		reason string // substring of the BlockedError reason; "" = allowed
	}{
		{"127.0.0.1", "loopback"},
		{"168.63.129.16", "cloud metadata"}, // Azure's host endpoint (WireServer)
		{"::ffff:168.63.129.16", "cloud metadata"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fc00::1", "unique-local"},
		{"fd12:3456::1", "unique-local"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.255", "carrier-grade NAT"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"255.255.255.255", "broadcast"},
		{"169.254.169.254", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata"},
		{"100.100.100.200", "cloud metadata"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"240.0.0.1", "reserved"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"::ffff:10.0.0.1", "private"},
		{"64:ff9b::7f00:1", "NAT64 address embedding 127.0.0.1, loopback"},
		{"64:ff9b::a9fe:a9fe", "cloud metadata"},
		{"2002:7f00:1::1", "6to4 address embedding 127.0.0.1, loopback"},
		{"2002:c0a8:101::1", "private"},
		{"2001::1", "Teredo"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"::127.0.0.1", "reserved IPv6"},
		{"100::1", "reserved IPv6"},
		{"2001:db8::1", "documentation"},
		{"192.0.2.1", "documentation"},

		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"2606:4700:4700::1111", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""},
		{"2002:808:808::1", ""},
	}
	var p *netguard.Policy // nil policy: nothing extra allowed
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			err := p.Check("", netip.MustParseAddr(tt.ip))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tt.ip, err)
				}
				return
			}
			if !errors.Is(err, netguard.ErrBlocked) {
				t.Fatalf("Check(%s) = %v, want ErrBlocked", tt.ip, err)
			}
			var be *netguard.BlockedError
			if !errors.As(err, &be) || !strings.Contains(be.Reason, tt.reason) {
				t.Fatalf("Check(%s) = %v, want reason containing %q", tt.ip, err, tt.reason)
			}
		})
	}

	if err := p.Check("x", netip.Addr{}); !errors.Is(err, netguard.ErrBlocked) {
		t.Errorf("Check(invalid addr) = %v, want ErrBlocked", err)
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	err := (*netguard.Policy)(nil).Check("127.0.0.1", netip.MustParseAddr("127.0.0.1"))
	const want = "netguard: refusing to connect to 127.0.0.1 (loopback); add it to RELAY_ALLOWED_TARGETS to allow"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	err = (*netguard.Policy)(nil).Check("Metadata.Example.", netip.MustParseAddr("169.254.169.254"))
	const want2 = "netguard: refusing to connect to metadata.example at 169.254.169.254 (cloud metadata); add it to RELAY_ALLOWED_TARGETS to allow"
	if err == nil || err.Error() != want2 {
		t.Fatalf("error = %v, want %q", err, want2)
	}
}

// Every spelling of "this machine" must fail before reaching the server.
// Go's URL parser and resolver treat some spellings as names (and may fail
// to resolve them, which is fine), others as IPs; whichever happens, the
// server must see nothing and the error must be a policy refusal or a
// resolution failure, never a connection.
func TestDialRefusesLoopbackSpellings(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, "tcp4", "127.0.0.1:0")
	hosts := []string{
		"127.0.0.1", "localhost", "LOCALHOST.", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
		"127.1", "127.0.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001",
		"017700000001", "0.0.0.0", "0", "[::]", "[64:ff9b::7f00:1]", "[2002:7f00:1::1]",
		"[::127.0.0.1]",
	}
	resolvers := map[string]*net.Resolver{
		"system resolver": nil,
		// A resolver that maps every name to 127.0.0.1, like a hostile DNS
		// name or an inet_aton-style libc would.
		"hostile resolver": fakeResolver(t, netip.MustParseAddr("127.0.0.1")),
	}
	for rname, r := range resolvers {
		c := guardedClient(nil, &net.Dialer{Resolver: r, Timeout: 2 * time.Second})
		for _, h := range hosts {
			t.Run(rname+"/"+h, func(t *testing.T) {
				err := get(c, "http://"+h+":"+srv.port+"/")
				if err == nil {
					t.Fatalf("GET via %s succeeded", h)
				}
				var dnsErr *net.DNSError
				if !errors.Is(err, netguard.ErrBlocked) && !errors.As(err, &dnsErr) {
					t.Fatalf("GET via %s: %v; want netguard.ErrBlocked or a DNS error", h, err)
				}
				t.Logf("%s: %v", h, err)
			})
		}
	}
	if n := srv.hits.Load(); n != 0 {
		t.Fatalf("server on 127.0.0.1 received %d requests, want 0", n)
	}
}

// The check runs on the address the name resolved to, so a harmless-looking
// name that resolves to the metadata service is refused.
func TestDialRefusesNameResolvingToMetadata(t *testing.T) {
	t.Parallel()
	r := fakeResolver(t, netip.MustParseAddr("169.254.169.254"))
	c := guardedClient(nil, &net.Dialer{Resolver: r, Timeout: 2 * time.Second})
	err := get(c, "http://hooks.innocent.example/latest/meta-data/")
	var be *netguard.BlockedError
	if !errors.As(err, &be) || !errors.Is(err, netguard.ErrBlocked) {
		t.Fatalf("GET = %v, want a netguard.BlockedError", err)
	}
	if be.Reason != "cloud metadata" || be.Host != "hooks.innocent.example" || be.Addr != netip.MustParseAddr("169.254.169.254") {
		t.Fatalf("BlockedError = %+v", be)
	}
	if !strings.Contains(err.Error(), "refusing to connect to hooks.innocent.example at 169.254.169.254 (cloud metadata)") {
		t.Fatalf("error message %q does not explain the refusal", err)
	}
}

func TestDialRefusesNAT64NameViaDNS(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, "tcp4", "127.0.0.1:0")
	r := fakeResolver(t, netip.MustParseAddr("64:ff9b::7f00:1"))
	c := guardedClient(nil, &net.Dialer{Resolver: r, Timeout: 2 * time.Second})
	err := get(c, "http://nat64.example:"+srv.port+"/")
	if !errors.Is(err, netguard.ErrBlocked) {
		t.Fatalf("GET = %v, want ErrBlocked", err)
	}
	if srv.hits.Load() != 0 {
		t.Fatal("server was reached")
	}
}

func TestAllowlistLetsThroughExactlyWhatItNames(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, "tcp4", "127.0.0.1:0")

	t.Run("cidr", func(t *testing.T) {
		p, err := netguard.ParseAllowlist("127.0.0.1/32")
		if err != nil {
			t.Fatal(err)
		}
		c := guardedClient(p, &net.Dialer{Timeout: 2 * time.Second})
		before := srv.hits.Load()
		if err := get(c, "http://127.0.0.1:"+srv.port+"/"); err != nil {
			t.Fatalf("allowed target refused: %v", err)
		}
		if err := get(c, "http://[::ffff:127.0.0.1]:"+srv.port+"/"); err != nil {
			t.Fatalf("IPv4-mapped form of allowed target refused: %v", err)
		}
		if got := srv.hits.Load() - before; got != 2 {
			t.Fatalf("server saw %d requests, want 2", got)
		}
		for _, h := range []string{"[::1]", "127.0.0.2", "10.0.0.1", "169.254.169.254"} {
			if err := get(c, "http://"+h+":"+srv.port+"/"); !errors.Is(err, netguard.ErrBlocked) {
				t.Errorf("GET %s = %v, want ErrBlocked", h, err)
			}
		}
	})

	t.Run("ports", func(t *testing.T) {
		// Two servers on one host: an entry with a port opens exactly that port.
		other := newCountingServer(t, "tcp4", "127.0.0.1:0")
		r := fakeResolver(t, netip.MustParseAddr("127.0.0.1"))
		for _, entry := range []string{"127.0.0.1:" + srv.port, "127.0.0.0/8:" + srv.port, "receiver.internal:" + srv.port, "*.example.internal:" + srv.port} {
			p, err := netguard.ParseAllowlist(entry)
			if err != nil {
				t.Fatal(err)
			}
			c := guardedClient(p, &net.Dialer{Resolver: r, Timeout: 2 * time.Second})
			host := "127.0.0.1"
			switch {
			case strings.HasPrefix(entry, "receiver"):
				host = "receiver.internal"
			case strings.HasPrefix(entry, "*"):
				host = "a.example.internal"
			}
			before := srv.hits.Load()
			if err := get(c, "http://"+host+":"+srv.port+"/"); err != nil || srv.hits.Load() != before+1 {
				t.Errorf("%s: GET %s:%s = %v, want it allowed and served", entry, host, srv.port, err)
			}
			if err := get(c, "http://"+host+":"+other.port+"/"); !errors.Is(err, netguard.ErrBlocked) {
				t.Errorf("%s: GET %s:%s (another port) = %v, want ErrBlocked", entry, host, other.port, err)
			}
			if other.hits.Load() != 0 {
				t.Errorf("%s: the server on another port was reached", entry)
			}
		}
		// Check without a port knows no port, so only port-less entries apply.
		p, err := netguard.ParseAllowlist("127.0.0.1:" + srv.port)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Check("", netip.MustParseAddr("127.0.0.1")); !errors.Is(err, netguard.ErrBlocked) {
			t.Errorf("Check without a port = %v, want ErrBlocked", err)
		}
		port, _ := strconv.Atoi(srv.port)
		if err := p.CheckAddrPort("", netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), uint16(port))); err != nil {
			t.Errorf("CheckAddrPort of the mapped form on the allowed port = %v", err)
		}
	})

	t.Run("ipv6 loopback server still blocked", func(t *testing.T) {
		srv6 := newCountingServer(t, "tcp6", "[::1]:0")
		p, err := netguard.ParseAllowlist("127.0.0.1/32")
		if err != nil {
			t.Fatal(err)
		}
		c := guardedClient(p, &net.Dialer{Timeout: 2 * time.Second})
		if err := get(c, "http://[::1]:"+srv6.port+"/"); !errors.Is(err, netguard.ErrBlocked) {
			t.Fatalf("GET [::1] = %v, want ErrBlocked", err)
		}
		if srv6.hits.Load() != 0 {
			t.Fatal("server on ::1 was reached")
		}
	})

	t.Run("hostnames", func(t *testing.T) {
		p, err := netguard.ParseAllowlist("Receiver.Internal, *.example.internal")
		if err != nil {
			t.Fatal(err)
		}
		r := fakeResolver(t, netip.MustParseAddr("127.0.0.1"))
		c := guardedClient(p, &net.Dialer{Resolver: r, Timeout: 2 * time.Second})
		for _, h := range []string{"receiver.internal", "RECEIVER.internal", "a.example.internal", "a.b.example.internal"} {
			before := srv.hits.Load()
			if err := get(c, "http://"+h+":"+srv.port+"/"); err != nil {
				t.Errorf("GET %s = %v, want allowed", h, err)
			} else if srv.hits.Load() != before+1 {
				t.Errorf("GET %s did not reach the server", h)
			}
		}
		for _, h := range []string{"other.internal", "example.internal", "xexample.internal", "receiver.internal.evil", "sub.receiver.internal"} {
			before := srv.hits.Load()
			if err := get(c, "http://"+h+":"+srv.port+"/"); !errors.Is(err, netguard.ErrBlocked) {
				t.Errorf("GET %s = %v, want ErrBlocked", h, err)
			}
			if srv.hits.Load() != before {
				t.Errorf("GET %s reached the server", h)
			}
		}
	})
}

func TestDialContextKeepsExistingControl(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, "tcp4", "127.0.0.1:0")
	p, err := netguard.ParseAllowlist("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	var called atomic.Int64
	d := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		called.Add(1)
		return nil
	}}
	if err := get(guardedClient(p, d), "http://127.0.0.1:"+srv.port+"/"); err != nil {
		t.Fatal(err)
	}
	if called.Load() != 1 {
		t.Fatalf("original Control called %d times, want 1", called.Load())
	}
	// Blocked dials must not reach the original hook either.
	if err := get(guardedClient(p, d), "http://[::1]:"+srv.port+"/"); !errors.Is(err, netguard.ErrBlocked) {
		t.Fatalf("GET [::1] = %v, want ErrBlocked", err)
	}
	if called.Load() != 1 {
		t.Fatalf("original Control called for a blocked dial")
	}
}

func TestDialContextRefusesNonTCP(t *testing.T) {
	t.Parallel()
	dial := (*netguard.Policy)(nil).DialContext(nil)
	for _, network := range []string{"unix", "udp", "ip4:icmp"} {
		conn, err := dial(context.Background(), network, "127.0.0.1:53")
		if err == nil {
			conn.Close()
		}
		if !errors.Is(err, netguard.ErrBlocked) {
			t.Errorf("dial %s = %v, want ErrBlocked", network, err)
		}
	}
}

func TestParseAllowlist(t *testing.T) {
	t.Parallel()
	valid := []struct {
		in, want string
	}{
		{"", ""},
		{" , ,", ""},
		{"127.0.0.0/8", "127.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"10.1.2.3", "10.1.2.3/32"},
		{"::1", "::1/128"},
		{"::1/128, 127.0.0.1", "::1/128,127.0.0.1/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:10.0.0.1", "10.0.0.1/32"},
		{"Receiver.Internal.", "receiver.internal"},
		{"b.internal,a.internal", "a.internal,b.internal"},
		{"*.Example.Internal", "*.example.internal"},
		{"my_service", "my_service"},
		{"127.0.0.1:9000", "127.0.0.1/32:9000"},
		{"10.1.2.3/8:443", "10.0.0.0/8:443"},
		{"[::1]:8080", "[::1/128]:8080"},
		{"[fd00::/8]:443", "[fd00::/8]:443"},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1/32:80"},
		{"Receiver.Internal.:8080", "receiver.internal:8080"},
		{"*.example.internal:8443", "*.example.internal:8443"},
		{"receiver:9000, receiver, 127.0.0.1", "127.0.0.1/32,receiver,receiver:9000"},
	}
	for _, tt := range valid {
		p, err := netguard.ParseAllowlist(tt.in)
		if err != nil {
			t.Errorf("ParseAllowlist(%q) = %v", tt.in, err)
			continue
		}
		if got := p.String(); got != tt.want {
			t.Errorf("ParseAllowlist(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}

	invalid := []string{
		"10.0.0.0/33", "10.0.0.0/", "/8", "fe80::1%eth0", "receiver.internal:0", "receiver.internal:65536",
		"receiver.internal:", "receiver.internal:http", "receiver.internal:+80", "receiver.internal:080",
		"127.0.0.1:80:81", "[::1]", "[::1]:", "[10.0.0.1]:80", "[fe80::1%eth0]:80", "::1:80x",
		"http://receiver.internal", "*", "*.", "a.*.b", "**.x", "bad host", "-a.internal",
		"127.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "a..b", "héllo.internal",
		strings.Repeat("a", 64) + ".internal",
	}
	for _, in := range invalid {
		_, err := netguard.ParseAllowlist("ok.internal, " + in)
		if err == nil {
			t.Errorf("ParseAllowlist(%q) succeeded, want error", in)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseAllowlist(%q) error %q does not name the entry", in, err)
		}
	}
}

func FuzzParseAllowlist(f *testing.F) {
	for _, s := range []string{
		"", "127.0.0.0/8,::1/128", "10.0.0.1, receiver.internal", "*.example.internal",
		"::ffff:10.0.0.0/104", "fe80::1%eth0", "127.1", "0x7f.1", "a..b", "*.", ",,,",
		"1.2.3.4/0", "::/0", "A.B.C.", "127.0.0.1:9000", "10.0.0.0/8:443", "[::1]:8080",
		"[fd00::/8]:443", "[::ffff:10.0.0.1]:80", "receiver:9000,receiver", "*.example.internal:8443",
		"[10.0.0.1]:80", "x:080", "[::1]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := netguard.ParseAllowlist(s)
		if err != nil {
			if p != nil {
				t.Fatalf("ParseAllowlist(%q) returned a policy with error %v", s, err)
			}
			return
		}
		// The canonical form must parse back to itself, so what is logged
		// at startup is exactly what is enforced.
		canon := p.String()
		p2, err := netguard.ParseAllowlist(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if p2.String() != canon {
			t.Fatalf("canonical form not stable: %q -> %q", canon, p2.String())
		}
	})
}

func FuzzCheck(f *testing.F) {
	f.Add("", "", "127.0.0.1")
	f.Add("127.0.0.1/32", "localhost", "::ffff:127.0.0.1")
	f.Add("*.example.internal", "a.example.internal", "169.254.169.254")
	f.Add("", "x", "64:ff9b::a9fe:a9fe")
	f.Add("", "", "2002:a00:1::")
	f.Add("", "[::1]", "fe80::1%lo")
	f.Add("::/0", "", "::1")
	f.Add("127.0.0.1:9000", "", "127.0.0.1")
	f.Add("", "", "not an ip")
	f.Fuzz(func(t *testing.T, allow, host, ipStr string) {
		p, err := netguard.ParseAllowlist(allow)
		if err != nil {
			p = nil
		}
		ip, perr := netip.ParseAddr(ipStr)
		err = p.Check(host, ip)
		if err != nil && !errors.Is(err, netguard.ErrBlocked) {
			t.Fatalf("Check error %v does not wrap ErrBlocked", err)
		}
		if perr != nil {
			if err == nil {
				t.Fatalf("Check allowed an invalid address")
			}
			return
		}
		// Cross-check against the standard library's classification: with
		// no allowlist, nothing it calls local may get through.
		if err == nil && allow == "" {
			u := ip.Unmap()
			if u.IsLoopback() || u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsMulticast() ||
				u.IsUnspecified() || u.IsInterfaceLocalMulticast() || u.IsLinkLocalMulticast() {
				t.Fatalf("Check allowed %s, which the standard library classifies as non-public", ip)
			}
		}
	})
}
