// Command sample-app is the Go sample app of pytest-canary: a tiny HTTP service that says which
// version answered.
//
// It implements the same contract as pytest_canary/sample_app.py (see sample_app/README.md).
// The version is baked in at build time:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=v2" -o sample-app .
//
// Configuration (a flag wins over its environment variable; an empty variable counts as unset):
//   - version: --version-label, else the baked value, else APP_VERSION (only if the baked value
//     is empty: build with -X main.version= to configure it at run time); required.
//   - --port / PORT (default 8080, 0 picks a free port), --host / HOST (default 0.0.0.0).
//   - APP_NAME (default kubeapp), APP_TRACK (default stable), POD_NAME (default the hostname).
//   - ERROR_RATE (0..1), LATENCY_MS (milliseconds added before answering: N, or LO-HI drawn
//     uniformly per request) and ERROR_SEED: injected HTTP 500s and delays on every path except
//     /health and /relay.
//   - STARTUP_DELAY (seconds before listening), SHUTDOWN_GRACE (seconds for in-flight requests
//     after SIGTERM/SIGINT, default 5).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultPort  = 8080
	defaultHost  = "0.0.0.0"
	defaultName  = "kubeapp"
	defaultTrack = "stable"
	defaultGrace = 5 * time.Second

	// relayMaxCalls bounds /relay's n: one relay call must finish well within a client timeout.
	relayMaxCalls = 1000
	// relayCallTimeout bounds each outgoing /relay call.
	relayCallTimeout = 5 * time.Second
	// forwardPrefix: request headers X-Canary-Forward-<name> are sent on by /relay as <name>.
	forwardPrefix = "x-canary-forward-"
	// idleTimeout closes keep-alive connections that sit idle this long.
	idleTimeout = 120 * time.Second

	exitUsage = 2

	// maxLatencyMS bounds LATENCY_MS: a minute, past any client timeout.
	maxLatencyMS = 60000.0
)

type config struct {
	version      string
	host         string
	port         int
	name         string
	track        string
	hostname     string
	errorRate    float64
	latencyLow   float64 // milliseconds
	latencyHigh  float64
	errorSeed    *int64
	startupDelay time.Duration
	grace        time.Duration
}

// setting returns a raw value (flag first, then the environment) and where it came from.
func setting(flagValue *string, flagName, variable string) (string, string, bool) {
	if flagValue != nil {
		return *flagValue, fmt.Sprintf("--%s=%q", flagName, *flagValue), true
	}
	if variable == "" {
		return "", "", false
	}
	value := os.Getenv(variable)
	if value == "" {
		return "", "", false
	}
	return value, fmt.Sprintf("%s=%q from the environment", variable, value), true
}

func seconds(variable string, fallback time.Duration) (time.Duration, error) {
	raw, origin, ok := setting(nil, "", variable)
	if !ok {
		return fallback, nil
	}
	value, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsInf(value, 0) || !(value >= 0) {
		return 0, fmt.Errorf("%s: want seconds, 0 or more", origin)
	}
	return time.Duration(value * float64(time.Second)), nil
}

// loadConfig resolves the configuration; a flag wins over its environment variable.
func loadConfig(args []string, stderr io.Writer) (*config, error) {
	flags := flag.NewFlagSet("sample-app", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.String("version-label", "", "Version to report (default: the baked version, else env APP_VERSION).")
	flags.String("port", "", fmt.Sprintf("Port to listen on, 0 for a free one (default: env PORT, else %d).", defaultPort))
	flags.String("host", "", fmt.Sprintf("Address to listen on (default: env HOST, else %s).", defaultHost))
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	if flags.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	given := map[string]*string{}
	flags.Visit(func(f *flag.Flag) {
		value := f.Value.String()
		given[f.Name] = &value
	})

	cfg := &config{port: defaultPort, host: defaultHost, name: defaultName, track: defaultTrack, grace: defaultGrace}

	switch {
	case given["version-label"] != nil:
		cfg.version = *given["version-label"]
	case version != "":
		cfg.version = version
	default:
		cfg.version = os.Getenv("APP_VERSION")
	}
	if cfg.version == "" {
		return nil, errors.New("no version to report: build with -ldflags \"-X main.version=...\" " +
			"(the image build does it from --build-arg VERSION), pass --version-label or set APP_VERSION")
	}

	if raw, origin, ok := setting(given["port"], "port", "PORT"); ok {
		port, err := strconv.Atoi(raw)
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("%s: want an integer from 0 to 65535 (0 picks a free port)", origin)
		}
		cfg.port = port
	}
	if raw, _, ok := setting(given["host"], "host", "HOST"); ok && raw != "" {
		cfg.host = raw
	}
	if raw, origin, ok := setting(nil, "", "ERROR_RATE"); ok {
		rate, err := strconv.ParseFloat(raw, 64)
		// NaN fails both comparisons, so it is rejected here too.
		if err != nil || !(rate >= 0 && rate <= 1) {
			return nil, fmt.Errorf("%s: want a number from 0 to 1", origin)
		}
		cfg.errorRate = rate
	}
	if raw, origin, ok := setting(nil, "", "LATENCY_MS"); ok {
		low, high, err := parseLatency(raw, origin)
		if err != nil {
			return nil, err
		}
		cfg.latencyLow, cfg.latencyHigh = low, high
	}
	if raw, origin, ok := setting(nil, "", "ERROR_SEED"); ok {
		seed, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: want an integer", origin)
		}
		cfg.errorSeed = &seed
	}
	var err error
	if cfg.startupDelay, err = seconds("STARTUP_DELAY", 0); err != nil {
		return nil, err
	}
	if cfg.grace, err = seconds("SHUTDOWN_GRACE", defaultGrace); err != nil {
		return nil, err
	}
	if value := os.Getenv("APP_NAME"); value != "" {
		cfg.name = value
	}
	if value := os.Getenv("APP_TRACK"); value != "" {
		cfg.track = value
	}
	cfg.hostname = os.Getenv("POD_NAME")
	if cfg.hostname == "" {
		if cfg.hostname, err = os.Hostname(); err != nil {
			cfg.hostname = "unknown"
		}
	}
	return cfg, nil
}

// parseLatency reads LATENCY_MS: N or LO-HI milliseconds, from 0 to maxLatencyMS.
func parseLatency(raw, origin string) (float64, float64, error) {
	want := fmt.Errorf("%s: want milliseconds from 0 to %g: a number, or LO-HI (e.g. 50-150) "+
		"for a delay drawn uniformly per request", origin, maxLatencyMS)
	number := func(text string) (float64, bool) {
		value, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		// NaN fails both comparisons, so it is rejected here too.
		return value, err == nil && value >= 0 && value <= maxLatencyMS
	}
	lowText, highText, isRange := strings.Cut(strings.TrimSpace(raw), "-")
	low, ok := number(lowText)
	if !ok {
		return 0, 0, want
	}
	high := low
	if isRange {
		if high, ok = number(highText); !ok || high < low {
			return 0, 0, want
		}
	}
	return low, high, nil
}

// delays sleeps, per request, the injected delay: fixed, or uniform on [low, high] ms.
type delays struct {
	mu        sync.Mutex
	low, high float64
	rng       *rand.Rand
}

func newDelays(low, high float64, seed *int64) *delays {
	source := time.Now().UnixNano() + 1
	if seed != nil {
		source = *seed
	}
	// Its own generator: adding a delay does not change which requests fault.
	return &delays{low: low, high: high, rng: rand.New(rand.NewSource(source))}
}

// wait sleeps the delay, or less if the client goes away (ctx done).
func (d *delays) wait(ctx context.Context) {
	if d.high <= 0 {
		return
	}
	delay := d.low
	if d.high > d.low {
		d.mu.Lock()
		delay = d.low + (d.high-d.low)*d.rng.Float64()
		d.mu.Unlock()
	}
	timer := time.NewTimer(time.Duration(delay * float64(time.Millisecond)))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// faults decides, per request, whether to answer with an injected HTTP 500.
type faults struct {
	mu   sync.Mutex
	rate float64
	rng  *rand.Rand
}

func newFaults(rate float64, seed *int64) *faults {
	source := time.Now().UnixNano()
	if seed != nil {
		source = *seed
	}
	return &faults{rate: rate, rng: rand.New(rand.NewSource(source))}
}

func (f *faults) hit() bool {
	if f.rate <= 0 {
		return false
	}
	if f.rate >= 1 {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < f.rate
}

type app struct {
	cfg    *config
	faults *faults
	delays *delays
}

type identity struct {
	App      string `json:"app"`
	Version  string `json:"version"`
	Track    string `json:"track"`
	Hostname string `json:"hostname"`
}

type failure struct {
	Error   string `json:"error"`
	Version string `json:"version"`
}

type relayAnswer struct {
	From   string         `json:"from"`
	To     string         `json:"to"`
	N      int            `json:"n"`
	Seen   map[string]int `json:"seen"`
	Errors int            `json:"errors"`
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-App-Version", a.cfg.version)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		a.sendJSON(w, http.StatusMethodNotAllowed,
			failure{fmt.Sprintf("method %s not allowed: use GET or HEAD", r.Method), a.cfg.version})
		return
	}
	switch r.URL.Path {
	case "/health":
		send(w, http.StatusOK, "text/plain; charset=utf-8", []byte("ok\n"))
		return
	case "/relay":
		a.relay(w, r)
		return
	}
	// Every other path can be faulted: delayed first, then perhaps answered with a 500.
	a.delays.wait(r.Context())
	switch {
	case a.faults.hit():
		a.sendJSON(w, http.StatusInternalServerError, failure{"injected fault", a.cfg.version})
	case r.URL.Path == "/version":
		send(w, http.StatusOK, "text/plain; charset=utf-8", []byte(a.cfg.version+"\n"))
	default:
		a.sendJSON(w, http.StatusOK, identity{a.cfg.name, a.cfg.version, a.cfg.track, a.cfg.hostname})
	}
}

func send(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	// A write error means the client went away; there is nobody left to tell.
	_, _ = w.Write(body)
}

func (a *app) sendJSON(w http.ResponseWriter, status int, value interface{}) {
	body, err := json.Marshal(value)
	if err != nil {
		// Only plain strings, ints and maps of them are marshalled: this cannot happen.
		panic(fmt.Sprintf("sample-app: cannot encode %#v: %v", value, err))
	}
	send(w, status, "application/json", append(body, '\n'))
}

func relayTarget(to string) (*url.URL, error) {
	target, err := url.Parse(to) // also rejects a port that is not a number
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Hostname() == "" {
		return nil, fmt.Errorf("relay to=%q: want an http:// or https:// URL with a host", to)
	}
	return target, nil
}

func (a *app) relay(w http.ResponseWriter, r *http.Request) {
	query := r.URL.Query()
	to := query.Get("to")
	rawCalls := "1"
	if values, ok := query["n"]; ok && len(values) > 0 {
		rawCalls = values[0]
	}
	var problem string
	if to == "" {
		problem = "relay needs ?to=URL (an http:// or https:// URL)"
	} else if _, err := relayTarget(to); err != nil {
		problem = err.Error()
	}
	calls := 0
	if problem == "" {
		var err error
		calls, err = strconv.Atoi(rawCalls)
		if err != nil || calls < 1 || calls > relayMaxCalls {
			problem = fmt.Sprintf("relay n=%q: want an integer from 1 to %d", rawCalls, relayMaxCalls)
		}
	}
	if problem != "" {
		a.sendJSON(w, http.StatusBadRequest, failure{problem, a.cfg.version})
		return
	}

	forwarded := http.Header{}
	host := ""
	for name, values := range r.Header {
		if len(name) <= len(forwardPrefix) || !strings.HasPrefix(strings.ToLower(name), forwardPrefix) {
			continue
		}
		name = name[len(forwardPrefix):]
		for _, value := range values {
			if strings.EqualFold(name, "Host") {
				host = value // net/http takes Host from Request.Host, never from the header map
			} else {
				forwarded.Add(name, value)
			}
		}
	}
	seen, failed := relay(r.Context(), to, calls, forwarded, host)
	a.sendJSON(w, http.StatusOK, relayAnswer{a.cfg.version, to, calls, seen, failed})
}

// relay GETs url calls times, one after the other, over one kept-alive connection where the
// target allows it, through the proxy HTTP_PROXY/HTTPS_PROXY/NO_PROXY choose (never for
// loopback targets). It returns the 2xx answers per X-App-Version and the number of failed calls.
func relay(ctx context.Context, to string, calls int, headers http.Header, host string) (map[string]int, int) {
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: relayCallTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: relayCallTimeout,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		Timeout:   relayCallTimeout,
		// Like Python's http.client: a redirect is an answer (non-2xx, so an error), not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	seen := map[string]int{}
	failed := 0
	for i := 0; i < calls; i++ {
		version, ok := fetchVersion(ctx, client, to, headers, host)
		if ok {
			seen[version]++
		} else {
			failed++
		}
	}
	return seen, failed
}

func fetchVersion(ctx context.Context, client *http.Client, to string, headers http.Header, host string) (string, bool) {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, to, nil)
	if err != nil {
		return "", false
	}
	for name, values := range headers {
		request.Header[name] = values
	}
	if host != "" {
		request.Host = host
	}
	response, err := client.Do(request)
	if err != nil {
		return "", false // a failed call is what the relay counts; the error itself is not reported
	}
	defer response.Body.Close()
	// Read the body to the end so the connection can carry the next call.
	if _, err := io.Copy(io.Discard, response.Body); err != nil {
		return "", false
	}
	answered := response.Header.Get("X-App-Version")
	if response.StatusCode < 200 || response.StatusCode > 299 || answered == "" {
		return "", false
	}
	return answered, true
}

// listenAddress is HOST:PORT as printed in the "listening on" line (IPv6 hosts in brackets).
func listenAddress(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "sample-app: %v\n", err)
		return exitUsage
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(stop)

	if cfg.startupDelay > 0 {
		timer := time.NewTimer(cfg.startupDelay)
		select {
		case <-timer.C:
		case <-stop:
			timer.Stop()
			return 0
		}
	}

	listener, err := net.Listen("tcp", listenAddress(cfg.host, cfg.port))
	if err != nil {
		fmt.Fprintf(stderr, "sample-app: cannot listen on %s: %v\n", listenAddress(cfg.host, cfg.port), err)
		return 1
	}
	port := listener.Addr().(*net.TCPAddr).Port
	fmt.Fprintf(stdout, "listening on %s\n", listenAddress(cfg.host, port))

	server := &http.Server{
		Handler: &app{
			cfg:    cfg,
			faults: newFaults(cfg.errorRate, cfg.errorSeed),
			delays: newDelays(cfg.latencyLow, cfg.latencyHigh, cfg.errorSeed),
		},
		ReadHeaderTimeout: idleTimeout,
		IdleTimeout:       idleTimeout,
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()

	select {
	case err := <-served:
		fmt.Fprintf(stderr, "sample-app: serving stopped: %v\n", err)
		return 1
	case <-stop:
	}
	// Shutdown closes the listener and idle keep-alive connections at once, then waits for
	// in-flight requests (answered with "Connection: close") until the grace runs out.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.grace)
	defer cancel()
	if err := server.Shutdown(ctx); err != nil {
		// The grace ran out: cut the remaining connections. Exiting 0 is still a clean stop.
		_ = server.Close()
	}
	return 0
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
