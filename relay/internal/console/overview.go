package console

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/status"
	"github.com/relayhq/relay/relay/internal/store"
)

type overviewData struct {
	Summary       status.Summary
	OldestUnread  string
	Held          int64 // pending deliveries held behind an earlier one of their ordered key
	Hooks, Active int
	Failing       []hookRow
	Hour, Day     chartPair
	Changes       []changeLine
}

// chartPair is a span's two charts: attempts by outcome, and lag.
type chartPair struct {
	Outcomes, Lag chart
	Attempts      int64
	SuccessRate   float64
	LagP50        string
	LagP95        string
}

type changeLine struct {
	change
	WebhookID *string
}

// overview is the console's home: what the relay is doing now (attempts per minute by
// outcome and commit-to-receipt lag, over the last hour and day), the outbox backlog,
// and the webhooks in trouble first.
func (c *console) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	var d overviewData
	now := time.Now()
	err := readTx(r.Context(), c.Pool, func(tx pgx.Tx) error {
		ctx := r.Context()
		var err error
		// The backlog from package status; pending and failed are the per-webhook counts
		// added up, rather than counted twice.
		if d.Summary.Backlog, d.Summary.OldestUnread, err = status.ReadBacklog(ctx, tx); err != nil {
			return err
		}
		hooks, totals, err := listHooksCounted(ctx, tx, "")
		if err != nil {
			return err
		}
		d.Summary.Pending, d.Summary.Failed, d.Held = totals.Pending, totals.Failed, totals.Held
		d.Hooks = len(hooks)
		for _, h := range hooks {
			if h.Status == "active" {
				d.Active++
			}
			if h.Failing() {
				d.Failing = append(d.Failing, h)
			}
		}
		// Worst first: given-up deliveries, then pending ones, then disabled.
		slices.SortStableFunc(d.Failing, func(a, b hookRow) int {
			if a.Failed != b.Failed {
				return int(b.Failed - a.Failed)
			}
			return int(b.Pending - a.Pending)
		})
		minutes, err := series(ctx, tx, now.Add(-time.Hour), now, time.Minute)
		if err != nil {
			return err
		}
		hours, err := series(ctx, tx, daySince(now), now, time.Hour)
		if err != nil {
			return err
		}
		d.Hour = charts(minutes, time.Minute, now.Add(-time.Hour), now)
		d.Day = charts(hours, time.Hour, daySince(now), now)
		rows, err := tx.Query(ctx, `SELECT at, key_id, key_name, action, delivery_id, event_id::text, detail, webhook_id
			FROM relay.console_changes ORDER BY id DESC LIMIT 8`)
		if err != nil {
			return err
		}
		d.Changes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (changeLine, error) {
			var l changeLine
			err := r.Scan(&l.At, &l.KeyID, &l.KeyName, &l.Action, &l.DeliveryID, &l.EventID, &l.Detail, &l.WebhookID)
			return l, err
		})
		return err
	})
	if err != nil {
		return err
	}
	if d.Summary.Backlog > 0 {
		d.OldestUnread = d.Summary.OldestUnread.Round(time.Second).String()
	}
	c.render(w, r, s, http.StatusOK, "overview", "Overview", "overview", d)
	return nil
}

// chart is a server-rendered SVG chart: shapes in a 600×150 box that the page stretches
// to its width, labels beside it in HTML (so they stay legible on a phone).
type chart struct {
	Bars   []bar
	Lines  []line
	Grid   []float64
	YMax   string
	YMid   string
	YMin   string
	XStart string
	XMid   string
	XEnd   string
	Empty  bool
}

type bar struct {
	X, W  float64
	Segs  []seg
	Title string
}

type seg struct {
	Y, H  float64
	Class string
}

type line struct {
	Points string
	Class  string
}

const chartW, chartH = 600.0, 150.0

// charts draws a series: stacked bars of attempts per minute by outcome, and the p50
// and p95 commit-to-receipt lag of successful attempts as step lines on the lag
// buckets' (logarithmic) scale.
func charts(pts []point, step time.Duration, since, now time.Time) chartPair {
	var cp chartPair
	var total stats
	var peak float64
	rates := make([][3]float64, len(pts))
	for i, p := range pts {
		total.add(p.stats)
		// Per minute over the part of the step inside [since, now].
		from, to := p.At, p.At.Add(step)
		if from.Before(since) {
			from = since
		}
		if to.After(now) {
			to = now
		}
		mins := to.Sub(from).Minutes()
		if step == time.Minute || mins <= 0 {
			mins = 1
		}
		rates[i] = [3]float64{float64(p.Succeeded) / mins, float64(p.Retried) / mins, float64(p.Failed) / mins}
		peak = max(peak, rates[i][0]+rates[i][1]+rates[i][2])
	}
	cp.Attempts, cp.SuccessRate = total.Attempts, total.SuccessRate()
	cp.LagP50 = quantileLabel(total.Lag[:], store.LagBuckets[:], 0.5)
	cp.LagP95 = quantileLabel(total.Lag[:], store.LagBuckets[:], 0.95)

	layout := "15:04"
	if step == time.Hour {
		layout = "Jan 2 15:04"
	}
	xs := func(i int) string {
		if len(pts) == 0 {
			return ""
		}
		return pts[i].At.UTC().Format(layout) + " UTC"
	}
	o := &cp.Outcomes
	o.Empty = total.Attempts == 0
	if len(pts) > 0 {
		o.XStart, o.XMid, o.XEnd = xs(0), xs(len(pts)/2), "now"
	}
	scale := niceCeil(peak)
	o.YMax, o.YMid, o.YMin = rateLabel(scale), rateLabel(scale/2), "0"
	o.Grid = []float64{0, chartH / 2}
	slot := chartW / float64(max(len(pts), 1))
	for i, p := range pts {
		b := bar{X: float64(i)*slot + slot*0.12, W: slot * 0.76,
			Title: fmt.Sprintf("%s: %d succeeded, %d failed and retried, %d failed for good", xs(i), p.Succeeded, p.Retried, p.Failed)}
		y := chartH
		for k, cls := range []string{"s-ok", "s-retry", "s-fail"} {
			if rates[i][k] <= 0 || scale <= 0 {
				continue
			}
			h := rates[i][k] / scale * chartH
			y -= h
			b.Segs = append(b.Segs, seg{Y: y, H: h, Class: cls})
		}
		o.Bars = append(o.Bars, b)
	}

	l := &cp.Lag
	l.Empty = total.Succeeded == 0
	l.XStart, l.XMid, l.XEnd = o.XStart, o.XMid, o.XEnd
	// Bucket i (of nBuckets) is drawn at height (i + ½) / nBuckets.
	l.YMax, l.YMid, l.YMin = "> "+msLabel(store.LagBuckets[len(store.LagBuckets)-1]), "≈ 1 s", "≤ "+msLabel(store.LagBuckets[0])
	levels := float64(nBuckets)
	l.Grid = []float64{0, chartH / 2}
	for _, q := range []struct {
		q   float64
		cls string
	}{{0.5, "l-p50"}, {0.95, "l-p95"}} {
		var run []string
		flush := func() {
			if len(run) > 0 {
				l.Lines = append(l.Lines, line{Points: joinPoints(run), Class: q.cls})
				run = nil
			}
		}
		for i, p := range pts {
			bk := quantileBucket(p.Lag[:], q.q)
			if bk < 0 {
				flush()
				continue
			}
			y := chartH - (float64(bk)+0.5)/levels*chartH
			run = append(run, pt(float64(i)*slot, y), pt(float64(i+1)*slot, y))
		}
		flush()
	}
	return cp
}

func pt(x, y float64) string {
	return strconv.FormatFloat(x, 'f', 1, 64) + "," + strconv.FormatFloat(y, 'f', 1, 64)
}

func joinPoints(ps []string) string {
	out := ""
	for i, p := range ps {
		if i > 0 {
			out += " "
		}
		out += p
	}
	return out
}

// niceCeil rounds a chart's top up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for p > v*10 {
		p /= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func rateLabel(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if v < 1 && v > 0 {
		s = strconv.FormatFloat(v, 'f', 2, 64)
	}
	return s + "/min"
}
