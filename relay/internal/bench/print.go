package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Print writes the report as text: the server and its mode, the baselines, (a)–(d),
// (w), the growth tables (e)–(h), then each delivering scenario's cost per delivery.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
	stmts := ""
	switch {
	case r.PGStatStatements:
		stmts = "; pg_stat_statements on"
	case r.PGStatStatementsNote != "":
		stmts = "; pg_stat_statements " + r.PGStatStatementsNote
	}
	server := "a private cluster"
	if r.Server != "private" {
		server = "the DATABASE_URL server"
	}
	fmt.Fprintf(w, "PostgreSQL %s on %s: %s%s\n", r.PostgreSQL, server, r.Mode, stmts)
	if r.Durable {
		fmt.Fprintf(w, "every figure below is with %s (production-like)\n", r.shortMode())
	} else {
		fmt.Fprintf(w, "every figure below is with %s: commits skip the disk flush, which a production server pays\n", r.shortMode())
	}
	if len(r.RelayEnv) > 0 {
		fmt.Fprintf(w, "relay env: %s\n", strings.Join(r.RelayEnv, " "))
	}
	fmt.Fprintf(w, "baseline [%s]: raw single-row INSERT %.0f tx/s (8 conns), %.0f tx/s (1 conn); raw HTTP POST %.0f/s (64 conns)\n",
		r.shortMode(), r.InsertTxPerSec, r.InsertTx1Conn, r.HTTPPerSec)

	for _, s := range r.Scenarios {
		switch s.ID {
		case ScenarioSteady, ScenarioBacklog, ScenarioFanout, ScenarioIdle:
			s.print(w)
		}
	}
	if r.Writer != nil {
		r.Writer.print(w)
	}
	r.printSizes(w)
	r.printWidths(w)
	r.printBodies(w)
	r.printReceivers(w)
	for _, s := range r.byID(ScenarioReplay) {
		if s.Replay != nil {
			s.Replay.print(w, s)
		}
	}
	r.printCosts(w)
	if failed := r.Failed(); len(failed) > 0 {
		fmt.Fprintf(w, "\nFAILED CHECKS:\n")
		for _, f := range failed {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
}

func (s Scenario) print(w io.Writer) {
	fmt.Fprintf(w, "\n%s [%s]\n", s.Name, s.Mode)
	fmt.Fprintf(w, "  %s\n", s.verdict())
	if s.WriteElapsed > 0 {
		fmt.Fprintf(w, "  backlog written in %s (%.0f events/s), before the relay started\n", s.WriteElapsed.Round(time.Millisecond), s.WritePerSecond)
	}
	if s.Deliveries > 0 {
		fmt.Fprintf(w, "  %.0f deliveries/s in %s = %.3fx raw INSERT tx/s, %.3fx raw HTTP POST/s\n",
			s.PerSecond, s.Elapsed.Round(time.Millisecond), s.VsInsert, s.VsHTTP)
	}
	if s.EmitPerSecond > 0 {
		fmt.Fprintf(w, "  events committed at %.0f/s by %d writer connections\n", s.EmitPerSecond, steadyWriters)
	}
	if s.Latency != nil {
		fmt.Fprintf(w, "  latency commit->receipt: p50 %s  p90 %s  p99 %s  max %s\n",
			ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max))
	}
	fmt.Fprintf(w, "  relay CPU %.2fs (%.2f%% of one core)", s.RelayCPUSeconds, s.RelayCPUPercent)
	if s.Deliveries > 0 {
		fmt.Fprintf(w, ", %.0f µs/delivery", s.RelayCPUMicrosPerDelivery)
	}
	fmt.Fprintf(w, "; peak RSS %.1f MiB\n", s.PeakRSSMiB)
	if s.Deliveries > 0 && s.PGBytesPerDelivery > 0 {
		fmt.Fprintf(w, "  PostgreSQL: %s\n", s.tables())
	}
}

// verdict is the scenario's check, in words.
func (s Scenario) verdict() string {
	if s.ID == ScenarioIdle {
		if s.OK {
			return "ok: no delivery without an event"
		}
		return "FAILED: " + s.Failure
	}
	v := fmt.Sprintf("%d of %d deliveries, %d duplicates, %d lost", s.Deliveries-s.Duplicates, s.Expected, s.Duplicates, s.Lost)
	if s.OK {
		return "ok: " + v
	}
	return "FAILED: " + s.Failure + " (" + v + ")"
}

func (s Scenario) tables() string {
	parts := make([]string, 0, len(s.Tables))
	for _, t := range s.Tables {
		parts = append(parts, fmt.Sprintf("%s %s", t.Table, mib(t.Bytes)))
	}
	return fmt.Sprintf("%.0f B/delivery of table+index after the drain (%s)", s.PGBytesPerDelivery, strings.Join(parts, ", "))
}

func (wc *WriterCost) print(w io.Writer) {
	fmt.Fprintf(w, "\n%s [%s]\n", wc.Name, wc.Mode)
	fmt.Fprintf(w, "  %s\n", wc.Note)
	if wc.OK {
		fmt.Fprintf(w, "  ok: %d emitting transactions committed, %d events in the outbox\n", wc.Emitted, wc.Stored)
	} else {
		fmt.Fprintf(w, "  FAILED: %s\n", wc.Failure)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  \tclients\tplain tx/s\twith event tx/s\twith/plain\tper round\t\n")
	for _, r := range wc.Results {
		rounds := make([]string, len(r.Ratios))
		for i, x := range r.Ratios {
			rounds[i] = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%.0f\t%.0f\t%.2f\t%s\t\n", r.Description, r.Clients, r.PlainMedian, r.EmitMedian, r.RatioMedian, strings.Join(rounds, " "))
	}
	tw.Flush()
	fmt.Fprintf(w, "  (medians of %d rounds; with/plain is the median of the rounds' ratios)\n", wc.Rounds)
}

func (r *Report) byID(id string) []Scenario {
	var out []Scenario
	for _, s := range r.Scenarios {
		if s.ID == id {
			out = append(out, s)
		}
	}
	return out
}

func ok(s Scenario) string {
	if s.OK {
		return "ok"
	}
	return "FAILED: " + s.Failure
}

func (r *Report) printSizes(w io.Writer) {
	ss := r.byID(ScenarioSizes)
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\ne: backlog drain at growing sizes, 1 webhook [%s]\n", r.shortMode())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  events\twrite s\twrite events/s\tdeliveries/s\trelay peak RSS MiB\tPG B/delivery\trelay CPU µs/delivery\tPG CPU µs/delivery\t\tcheck\n")
	for _, s := range ss {
		fmt.Fprintf(tw, "  %d\t%.1f\t%.0f\t%.0f\t%.1f\t%.0f\t%.0f\t%s\t\t%s\n", s.Events, s.WriteElapsed.Seconds(), s.WritePerSecond, s.PerSecond,
			s.PeakRSSMiB, s.PGBytesPerDelivery, s.RelayCPUMicrosPerDelivery, optMicros(s.PGCPUMicrosPerDelivery), ok(s))
	}
	tw.Flush()
	for _, s := range ss {
		if s.PGBytesPerDelivery > 0 {
			fmt.Fprintf(w, "  %d: %s\n", s.Events, s.tables())
		}
	}
}

func (r *Report) printWidths(w io.Writer) {
	ss := r.byID(ScenarioWidths)
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\nf: webhooks per event, %d events [%s]\n", ss[0].Events, r.shortMode())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  webhooks\tdeliveries\tdeliveries/s\tfan-out calls\tfan-out mean ms\tfan-out total ms\tfan-out µs/delivery\trelay peak RSS MiB\t\tcheck\n")
	for _, s := range ss {
		calls, mean, total, per := "n/a", "n/a", "n/a", "n/a"
		if f := s.Fanout; f != nil {
			calls, mean, total, per = fmt.Sprint(f.Calls), fmt.Sprintf("%.2f", f.MeanMicros/1000), fmt.Sprintf("%.0f", f.TotalMillis), fmt.Sprintf("%.1f", f.MicrosPerDelivery)
		}
		fmt.Fprintf(tw, "  %d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%.1f\t\t%s\n", s.Webhooks, s.Deliveries, s.PerSecond, calls, mean, total, per, s.PeakRSSMiB, ok(s))
	}
	tw.Flush()
	if ss[0].StatementsNote != "" {
		fmt.Fprintf(w, "  fan-out statement time %s\n", ss[0].StatementsNote)
	}
}

func (r *Report) printBodies(w io.Writer) {
	ss := r.byID(ScenarioBodies)
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\ng: body size, 1 webhook [%s]\n", r.shortMode())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  body\tevents\tdeliveries/s\tMB/s\twrite s\trelay peak RSS MiB\tPG B/delivery\t\tcheck\n")
	for _, s := range ss {
		fmt.Fprintf(tw, "  %s\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.0f\t\t%s\n", byteSize(s.BodyBytes), s.Events, s.PerSecond, s.MBPerSecond,
			s.WriteElapsed.Seconds(), s.PeakRSSMiB, s.PGBytesPerDelivery, ok(s))
	}
	tw.Flush()
}

func (r *Report) printReceivers(w io.Writer) {
	ss := r.byID(ScenarioReceiver)
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\nh: slow receivers, 1 webhook, %d events [%s]\n", ss[0].Events, r.shortMode())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  receiver takes\trelay settings\tdeliveries/s\tceiling/s\t\tcheck\n")
	for _, s := range ss {
		env := "as configured"
		if len(s.RelayEnv) > 0 {
			env = strings.Join(s.RelayEnv, " ")
		}
		ceiling := ""
		if a := s.Advice; a != nil {
			env = fmt.Sprintf("as configured (concurrency %d, workers %d)", a.WebhookConcurrency, a.Workers)
			ceiling = fmt.Sprintf("%.0f", a.CeilingPerSecond)
		}
		delay := "0 (reference)"
		if s.ReceiverDelay > 0 {
			delay = s.ReceiverDelay.String()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.0f\t%s\t\t%s\n", delay, env, s.PerSecond, ceiling, ok(s))
	}
	tw.Flush()
	for _, s := range ss {
		a := s.Advice
		if a == nil {
			continue
		}
		fmt.Fprintf(w, "  at %s per request: at most min(concurrency, workers) / latency = %.0f/s per webhook", s.ReceiverDelay, a.CeilingPerSecond)
		if a.TargetPerSecond > 0 {
			fmt.Fprintf(w, "; %.0f/s (an instant receiver's rate here) needs %d requests in flight: %s", a.TargetPerSecond, a.Needed, a.Setting)
			if a.VerifiedPerSecond > 0 {
				fmt.Fprintf(w, "; measured with it: %.0f/s", a.VerifiedPerSecond)
			}
		}
		fmt.Fprintln(w)
	}
}

// printCosts lists, per delivering scenario, what a delivery costs: the relay's CPU,
// PostgreSQL's, and the statements that took the most time.
func (r *Report) printCosts(w io.Writer) {
	var ss []Scenario
	for _, s := range r.Scenarios {
		if s.Deliveries > 0 {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\ncost per delivery [%s] (CPU from /proc; statements from pg_stat_statements, the relay's only)\n", r.shortMode())
	for _, s := range ss {
		fmt.Fprintf(w, "  %s: relay CPU %.0f µs, PostgreSQL CPU %s µs", s.Name, s.RelayCPUMicrosPerDelivery, optMicros(s.PGCPUMicrosPerDelivery))
		if s.StatementsNote != "" {
			fmt.Fprintf(w, "; statements %s\n", s.StatementsNote)
			continue
		}
		fmt.Fprintf(w, ", statements %.0f µs in all\n", s.StatementsMicrosPerDelivery)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "    \tcalls\tmean µs\ttotal ms\tµs/delivery\t\n")
		for _, st := range s.Statements[:min(5, len(s.Statements))] {
			fmt.Fprintf(tw, "    %s\t%d\t%.0f\t%.0f\t%.1f\t\n", st.Label, st.Calls, st.MeanMicros, st.TotalMillis, st.MicrosPerDelivery)
		}
		tw.Flush()
	}
}

func optMicros(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", *p)
}

func mib(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
