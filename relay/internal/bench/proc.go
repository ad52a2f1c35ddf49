package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// receiver counts deliveries, per (event, webhook), and measures commit-to-receipt
// latency. Each webhook of a scenario points at its own path of one receiver.
type receiver struct {
	url       string
	srv       *http.Server
	delay     time.Duration // how long each request takes to answer
	committed sync.Map      // event id -> time.Time of its commit
	mu        sync.Mutex
	seen      map[string]int32 // webhook-id + path -> requests
	lat       []time.Duration
	count     atomic.Int64
	first     atomic.Int64 // unix nanos of the first request
	last      atomic.Int64 // unix nanos of the latest request
	served    sync.WaitGroup
}

func newReceiver(delay time.Duration) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: receiver: %w", err)
	}
	rc := &receiver{url: "http://" + ln.Addr().String() + "/hook", seen: map[string]int32{}, delay: delay}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	rc.served.Add(1)
	go func() {
		defer rc.served.Done()
		_ = rc.srv.Serve(ln)
	}()
	return rc, nil
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if rc.delay > 0 {
		t := time.NewTimer(rc.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	now := time.Now()
	id := r.Header.Get("webhook-id")
	rc.mu.Lock()
	if id != "" {
		rc.seen[id+r.URL.Path]++
		if at, ok := rc.committed.Load(id); ok {
			rc.lat = append(rc.lat, now.Sub(at.(time.Time)))
		}
	}
	rc.mu.Unlock()
	rc.count.Add(1)
	rc.first.CompareAndSwap(0, now.UnixNano())
	rc.last.Store(now.UnixNano())
	w.WriteHeader(http.StatusNoContent)
}

// tally returns the (event, webhook) pairs received and the requests beyond the first
// for any of them.
func (rc *receiver) tally() (distinct, duplicates int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.seen {
		duplicates += int(n) - 1
	}
	return len(rc.seen), duplicates
}

func (rc *receiver) latency() *Latency {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.lat) == 0 {
		return nil
	}
	l := slices.Clone(rc.lat)
	slices.Sort(l)
	at := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	return &Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: l[len(l)-1]}
}

func (rc *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if rc.srv.Shutdown(ctx) != nil {
		_ = rc.srv.Close()
	}
	rc.served.Wait()
}

// relayProc is a running `relay run`, measured through /proc.
type relayProc struct {
	cmd  *exec.Cmd
	done chan error
	mu   sync.Mutex
	out  strings.Builder
}

// startRelay runs `relay run` on dbURL with the report's RelayEnv and then env (later
// entries win) and waits until it is ready.
func (b *bench) startRelay(ctx context.Context, dbURL string, env ...string) (*relayProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(b.o.RelayBinary, "run")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "RELAY_ADDR="+addr,
		"RELAY_ALLOWED_TARGETS=127.0.0.1", "RELAY_LOG_FORMAT=json", "RELAY_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, b.o.RelayEnv...)
	cmd.Env = append(cmd.Env, env...)
	p := &relayProc{cmd: cmd, done: make(chan error, 1)}
	cmd.Stderr = p
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start relay: %w", err)
	}
	go func() { p.done <- cmd.Wait() }()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("bench: relay exited: %v: %s", err, p.output())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.stop()
	return nil, errors.New("bench: relay not ready after 30s")
}

// Write collects the relay's log (warnings and errors only).
func (p *relayProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out.Len() > 64<<10 { // enough to say why it died
		return len(b), nil
	}
	return p.out.Write(b)
}

func (p *relayProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// cpu returns user+system CPU seconds of the process so far.
func (p *relayProc) cpu() float64 {
	t, _ := procCPU(p.cmd.Process.Pid)
	return t.self
}

// peakRSS returns VmHWM in MiB.
func (p *relayProc) peakRSS() float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// stop ends the relay the way an operator does (SIGTERM: in-flight results are
// recorded before it exits).
func (p *relayProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err // stop may be called twice
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done
	}
}

// exited reports whether the relay has ended, and how.
func (p *relayProc) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// cpuTimes are a process's CPU seconds: its own, and its reaped children's.
type cpuTimes struct{ self, children float64 }

// procCPU reads /proc/PID/stat: utime, stime, cutime, cstime (fields 14-17 of stat(5)),
// and the parent's pid.
func procCPU(pid int) (cpuTimes, int) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return cpuTimes{}, 0
	}
	fields := strings.Fields(s[i+2:])
	if len(fields) < 15 {
		return cpuTimes{}, 0
	}
	num := func(k int) float64 { v, _ := strconv.ParseFloat(fields[k], 64); return v / 100 } // USER_HZ is 100 on Linux
	ppid, _ := strconv.Atoi(fields[1])
	return cpuTimes{self: num(11) + num(12), children: num(13) + num(14)}, ppid
}

// postmasterCPU is the CPU of a PostgreSQL server running on this machine: the
// postmaster's, its live children's (backends, autovacuum, WAL writer...), and that of
// the children it reaped (ended connections).
func postmasterCPU(postmaster int) float64 {
	t, _ := procCPU(postmaster)
	total := t.self + t.children
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if t, ppid := procCPU(pid); ppid == postmaster {
			total += t.self + t.children
		}
	}
	return total
}

// findPostmaster returns the pid of the server behind a connection whose backend pid is
// backend, when that server runs on this machine (0 otherwise): a backend's parent is
// the postmaster.
func findPostmaster(backend int) int {
	comm := func(pid int) string {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return strings.TrimSpace(string(data))
	}
	if !strings.HasPrefix(comm(backend), "postgres") {
		return 0
	}
	_, ppid := procCPU(backend)
	if ppid <= 1 || !strings.HasPrefix(comm(ppid), "postgres") {
		return 0
	}
	return ppid
}
