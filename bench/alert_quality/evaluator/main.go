// Command evaluator evaluates Prometheus rule files over synthetic series with Prometheus's own
// TSDB, PromQL engine and rule manager (the packages of the Prometheus release the stack ships),
// and reports when every alert was pending, firing and resolved.
//
// It does what `promtool test rules` does (load series lazily, evaluate every group in file order
// at each evaluation timestamp, read the alerting rules' state with `for` applied), but reports
// the alert timeline instead of comparing it with expectations, uses the server's query defaults
// (lookback 5m, 50M samples), and runs scenarios in parallel.
//
// Usage: evaluator INPUT.json > OUTPUT.json (see input and output below; bench/alert_quality
// writes the input and reads the output).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// Input is one run: rule files, the evaluation interval, and the scenarios to evaluate them on.
type Input struct {
	RuleFiles          []string   `json:"rule_files"`
	EvaluationInterval int64      `json:"evaluation_interval_ms"` // the groups' interval (ALERTS, resend)
	GroupOrder         []string   `json:"group_order"`            // group names in the order to evaluate them
	Workers            int        `json:"workers"`
	Scenarios          []Scenario `json:"scenarios"`
}

// Scenario holds series on a regular grid and the evaluation timestamps (milliseconds, ascending).
type Scenario struct {
	Name      string   `json:"name"`
	EvalTimes []int64  `json:"eval_times_ms"`
	Series    []Series `json:"series"`
}

// Series is one series: values[i] is at start + i*step, except indices in Absent (no sample)
// and Stale (a staleness marker, as Prometheus writes when a target stops answering).
type Series struct {
	Labels map[string]string `json:"labels"`
	Start  int64             `json:"start_ms"`
	Step   int64             `json:"step_ms"`
	Values []float64         `json:"values"`
	Absent []int             `json:"absent"`
	Stale  []int             `json:"stale"`
}

// Episode is one alert instance from pending to its end, as Prometheus's rule manager tracks it.
type Episode struct {
	Alert      string            `json:"alert"`
	Labels     map[string]string `json:"labels"`
	ActiveAt   int64             `json:"active_ms"`
	FiredAt    *int64            `json:"fired_ms"`
	ResolvedAt *int64            `json:"resolved_ms"` // firing -> inactive
	EndedAt    *int64            `json:"ended_ms"`    // pending -> gone, never fired
}

// Result is the outcome of one scenario.
type Result struct {
	Name        string    `json:"name"`
	Episodes    []Episode `json:"episodes"`
	Evaluations int       `json:"evaluations"`
	Samples     int       `json:"samples"`
	Errors      []string  `json:"errors"`
	Seconds     float64   `json:"seconds"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: evaluator INPUT.json")
		os.Exit(2)
	}
	if path := os.Getenv("EVALUATOR_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var in Input
	if err := json.Unmarshal(raw, &in); err != nil {
		fail(fmt.Errorf("%s: %w", os.Args[1], err))
	}
	// Collect only past 2 GiB of heap: the engine allocates per query, and collecting at the default
	// pace costs a fifth of the CPU.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(2 << 30)
	if in.EvaluationInterval <= 0 {
		fail(fmt.Errorf("evaluation_interval_ms = %d: expected a positive interval", in.EvaluationInterval))
	}
	workers := in.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	engine := promql.NewEngine(promql.EngineOpts{
		// Prometheus server defaults: --query.max-samples, --query.timeout, --query.lookback-delta.
		MaxSamples:               50_000_000,
		Timeout:                  2 * time.Minute,
		LookbackDelta:            5 * time.Minute,
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		NoStepSubqueryIntervalFn: func(int64) int64 { return in.EvaluationInterval },
	})
	results := make([]Result, len(in.Scenarios))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results[i] = evaluate(engine, in, in.Scenarios[i])
			}
		}()
	}
	for i := range in.Scenarios {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(map[string]any{"results": results}); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "evaluator:", err)
	os.Exit(1)
}

// loader appends each series' samples up to a timestamp, as promtool's lazy loader does, so that
// rule results are always appended at the head of the TSDB.
type loader struct {
	series []Series
	lbls   []labels.Labels
	next   []int
	absent []map[int]bool
	stale  []map[int]bool
	total  int
}

func newLoader(series []Series) *loader {
	l := &loader{series: series, next: make([]int, len(series))}
	for _, s := range series {
		l.lbls = append(l.lbls, labels.FromMap(s.Labels))
		l.absent = append(l.absent, indexSet(s.Absent))
		l.stale = append(l.stale, indexSet(s.Stale))
	}
	return l
}

func indexSet(idx []int) map[int]bool {
	m := make(map[int]bool, len(idx))
	for _, i := range idx {
		m[i] = true
	}
	return m
}

func (l *loader) appendTill(ctx context.Context, db storage.AppendableV2, ts int64) error {
	app := db.AppenderV2(ctx)
	for k, s := range l.series {
		var ref storage.SeriesRef
		for ; l.next[k] < len(s.Values); l.next[k]++ {
			i := l.next[k]
			t := s.Start + int64(i)*s.Step
			if t > ts {
				break
			}
			if l.absent[k][i] {
				continue
			}
			v := s.Values[i]
			if l.stale[k][i] {
				v = math.Float64frombits(value.StaleNaN)
			}
			var err error
			ref, err = app.Append(ref, l.lbls[k], 0, t, v, nil, nil, storage.AppendV2Options{})
			if err != nil {
				_ = app.Rollback()
				return fmt.Errorf("series %s at %d: %w", l.lbls[k], t, err)
			}
			l.total++
		}
	}
	return app.Commit()
}

type episodeKey struct {
	rule   string
	labels string
	active int64
}

func evaluate(engine *promql.Engine, in Input, sc Scenario) Result {
	started := time.Now()
	res := Result{Name: sc.Name, Episodes: []Episode{}, Errors: []string{}}
	addErr := func(err error) { res.Errors = append(res.Errors, err.Error()) }

	dir, err := os.MkdirTemp("", "alert-quality-tsdb-")
	if err != nil {
		addErr(err)
		return res
	}
	defer os.RemoveAll(dir)
	opts := tsdb.DefaultOptions()
	opts.WALSegmentSize = -1 // nothing to recover: no write-ahead log
	opts.RetentionDuration = 0
	opts.MinBlockDuration = int64(24 * time.Hour / time.Millisecond)
	opts.MaxBlockDuration = opts.MinBlockDuration
	db, err := tsdb.Open(dir, nil, nil, opts, tsdb.NewDBStats())
	if err != nil {
		addErr(err)
		return res
	}
	defer db.Close()
	db.DisableCompactions()

	ctx := context.Background()
	manager := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:    rules.EngineQueryFunc(engine, db),
		AppendableV2: db,
		Queryable:    db,
		Context:      ctx,
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
		Logger:       promslog.NewNopLogger(),
		Parser:       parser.NewParser(parser.Options{}),
	})
	interval := time.Duration(in.EvaluationInterval) * time.Millisecond
	groupsMap, errs := manager.LoadGroups(interval, labels.EmptyLabels(), "", nil, false, in.RuleFiles...)
	if len(errs) > 0 {
		for _, e := range errs {
			addErr(e)
		}
		return res
	}
	groups, err := ordered(groupsMap, in.GroupOrder)
	if err != nil {
		addErr(err)
		return res
	}
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*rules.AlertingRule); ok {
				ar.SetRestored(true) // as promtool does: no `for` state to restore from a previous run
			}
		}
	}

	load := newLoader(sc.Series)
	if len(sc.EvalTimes) == 0 {
		addErr(fmt.Errorf("no evaluation times"))
		return res
	}
	// History before the first evaluation, appended in steps so the head only moves forward.
	minT := sc.EvalTimes[0]
	for _, s := range sc.Series {
		if s.Start < minT {
			minT = s.Start
		}
	}
	for t := minT; t < sc.EvalTimes[0]; t += int64(time.Hour / time.Millisecond) {
		if err := load.appendTill(ctx, db, t); err != nil {
			addErr(err)
			return res
		}
	}

	episodes := map[episodeKey]*Episode{}
	var order []episodeKey
	for _, ts := range sc.EvalTimes {
		if err := load.appendTill(ctx, db, ts); err != nil {
			addErr(err)
			return res
		}
		at := time.UnixMilli(ts).UTC()
		seen := map[episodeKey]bool{}
		for _, g := range groups {
			g.Eval(ctx, at)
			for _, r := range g.Rules() {
				if r.LastError() != nil {
					addErr(fmt.Errorf("rule %s at %d ms: %w", r.Name(), ts, r.LastError()))
					return res
				}
				ar, ok := r.(*rules.AlertingRule)
				if !ok {
					continue
				}
				ar.ForEachActiveAlert(func(a *rules.Alert) {
					key := episodeKey{ar.Name(), a.Labels.String(), a.ActiveAt.UnixMilli()}
					seen[key] = true
					ep, ok := episodes[key]
					if !ok {
						ep = &Episode{Alert: ar.Name(), Labels: a.Labels.Map(), ActiveAt: a.ActiveAt.UnixMilli()}
						episodes[key] = ep
						order = append(order, key)
					}
					if !a.FiredAt.IsZero() && ep.FiredAt == nil {
						v := a.FiredAt.UnixMilli()
						ep.FiredAt = &v
					}
					if !a.ResolvedAt.IsZero() && ep.ResolvedAt == nil {
						v := a.ResolvedAt.UnixMilli()
						ep.ResolvedAt = &v
					}
				})
			}
		}
		for _, key := range order {
			ep := episodes[key]
			if !seen[key] && ep.ResolvedAt == nil && ep.EndedAt == nil {
				v := ts
				ep.EndedAt = &v
			}
		}
		res.Evaluations++
	}
	for _, key := range order {
		res.Episodes = append(res.Episodes, *episodes[key])
	}
	res.Samples = load.total
	res.Seconds = time.Since(started).Seconds()
	return res
}

// ordered returns the groups in the given order of names (the order of the rule files and of the
// groups in them): recording rules are evaluated before the alerts that read them, in the same
// evaluation, as promtool does with group_eval_order.
func ordered(groups map[string]*rules.Group, order []string) ([]*rules.Group, error) {
	byName := map[string]*rules.Group{}
	for _, g := range groups {
		byName[g.Name()] = g
	}
	if len(order) != len(byName) {
		return nil, fmt.Errorf("group_order names %d groups, the rule files hold %d", len(order), len(byName))
	}
	out := make([]*rules.Group, 0, len(order))
	for _, name := range order {
		g, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("group_order: no group %q in the rule files", name)
		}
		out = append(out, g)
	}
	return out, nil
}
