// loadgen: the concurrent load client of the benchmarks (benchmarks/loads.py builds it with `go build`).
//
// Only the standard library, so `go build -o loadgen main.go` needs no module. Each mode drives one registry
// on 127.0.0.1, prints one JSON line on stdout and exits 0 whenever it could measure (failed requests are
// counted, not fatal); the Python side decides what a failure means.
//
//	push-streams  -url U -repo R -file F -offsets o1,o2,... -size N -digests d1,d2,... [-chunk C]
//	    one stream per offset, all at once: stream i pushes bytes [o_i, o_i+N) of F, whose digest is d_i.
//	    -chunk 0: `PUT <location>?digest=` with the whole body; -chunk C: a PATCH per C bytes with
//	    Content-Range, then an empty `PUT ?digest=`. The POSTs that open the uploads are made before the
//	    clock starts; afterwards each blob is checked with HEAD (untimed). Bodies are sent from the file
//	    (the kernel's sendfile where Go can), so the client costs little CPU.
//	pull-streams  -url U -repo R -size N -digests d1,d2,...
//	    one GET per digest, all at once; size and Docker-Content-Digest checked, bodies discarded.
//	push-small    -url U -repo R -count N -size S -clients C
//	    N distinct random blobs of S bytes (made and hashed before the clock starts) pushed by C clients on
//	    keep-alive connections the way docker and containerd do it: `POST /v2/<repo>/blobs/uploads/`, then
//	    `PUT <location>?digest=` with the body; afterwards every blob is checked with HEAD (untimed).
//	pull-many     -url U -repo R -digest D -size N -clients C [-verify-every K]
//	    C clients, each on its own connection, released together, GET the same blob once; a response
//	    counts as an error if it is not a 200, is short or long, or carries another digest; every K-th
//	    body is also hashed.
//	pull-image    -url U -repo R -reference T -digest D -clients C
//	    C clients, released together, each pull one image as docker does: the manifest by reference (its body
//	    must hash to D), then its config and every layer at once; every body is hashed and checked against its
//	    descriptor (size and digest). A client is ok when all its requests are. Each client has its own
//	    keep-alive connections.
//
// Authentication: when the environment has LOADGEN_AUTHORIZATION (e.g. "Bearer <token>", a token the Python side
// fetched for -repo before starting loadgen), every request carries it as its Authorization header, the way
// registry clients reuse a token; unset or empty, requests are anonymous.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// authorization is the Authorization header of every request ("" for none), from LOADGEN_AUTHORIZATION.
var authorization = os.Getenv("LOADGEN_AUTHORIZATION")

type result struct {
	Mode        string             `json:"mode"`
	WallSeconds float64            `json:"wall_seconds"`
	Bytes       int64              `json:"bytes"`
	Requests    int64              `json:"requests"`
	OK          int64              `json:"ok"`
	Errors      map[string]int64   `json:"errors"`
	FirstErrors []string           `json:"first_errors"`
	Verified    int64              `json:"verified"`
	LatencyMs   map[string]float64 `json:"latency_ms,omitempty"`
}

// tally counts errors by kind and keeps the first few messages.
type tally struct {
	mu     sync.Mutex
	counts map[string]int64
	first  []string
}

func (t *tally) add(kind string, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts[kind]++
	if len(t.first) < 5 {
		t.first = append(t.first, kind+": "+fmt.Sprintf(format, args...))
	}
}

func newTally() *tally {
	return &tally{counts: map[string]int64{"connect": 0, "status": 0, "short": 0, "digest": 0, "missing": 0}}
}

func client(conns int, keepAlive bool) *http.Client {
	transport := &http.Transport{
		Proxy:               nil, // everything is on 127.0.0.1
		DialContext:         (&net.Dialer{Timeout: 60 * time.Second}).DialContext,
		DisableCompression:  true,
		DisableKeepAlives:   !keepAlive,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      256 << 10,
	}
	return &http.Client{Transport: transport, Timeout: 15 * time.Minute}
}

func resolve(base *url.URL, location string) (string, error) {
	if location == "" {
		return "", errors.New("response without Location")
	}
	ref, err := url.Parse(location)
	if err != nil {
		return "", err
	}
	return base.ResolveReference(ref).String(), nil
}

func withDigest(u, digest string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "digest=" + url.QueryEscape(digest)
}

// drain reads a body to the end with buf, returning the byte count (and the SHA-256 when h is not nil).
func drain(r io.Reader, buf []byte, h io.Writer) (int64, error) {
	var n int64
	for {
		m, err := r.Read(buf)
		if m > 0 {
			n += int64(m)
			if h != nil {
				h.Write(buf[:m])
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func do(c *http.Client, method, u string, body io.ReadCloser, length int64, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, u, nil)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Body = body
		req.ContentLength = length
		if length == 0 {
			req.Body = http.NoBody
		}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return c.Do(req)
}

// finish reads and closes a response body (so the connection can be reused) and checks the status.
func finish(resp *http.Response, want int, what string) error {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s -> %d (want %d)", what, resp.StatusCode, want)
	}
	return nil
}

func startUpload(c *http.Client, base *url.URL, repo string) (string, error) {
	resp, err := do(c, "POST", base.String()+"/v2/"+repo+"/blobs/uploads/", http.NoBody, 0, nil)
	if err != nil {
		return "", err
	}
	if err := finish(resp, http.StatusAccepted, "POST blobs/uploads/"); err != nil {
		return "", err
	}
	return resolve(base, resp.Header.Get("Location"))
}

func headBlob(c *http.Client, base *url.URL, repo, digest string, size int64) error {
	resp, err := do(c, "HEAD", base.String()+"/v2/"+repo+"/blobs/"+digest, nil, 0, nil)
	if err != nil {
		return err
	}
	if err := finish(resp, http.StatusOK, "HEAD "+digest); err != nil {
		return err
	}
	if resp.ContentLength != size {
		return fmt.Errorf("HEAD %s: Content-Length %d, want %d", digest, resp.ContentLength, size)
	}
	return nil
}

// rawConn is one keep-alive HTTP/1.1 connection for pushing file sections: the body goes from the page cache
// to the socket with sendfile (net/http cannot do that for a part of a file, since it reads the body to its
// end to check its length).
type rawConn struct {
	conn *net.TCPConn
	br   *bufio.Reader
}

func (rc *rawConn) close() {
	if rc.conn != nil {
		rc.conn.Close()
		rc.conn = nil
	}
}

// send makes one request whose body is bytes [offset, offset+n) of f (n may be 0), and returns the response
// with its body read and closed.
func (rc *rawConn) send(method, rawURL string, hdr map[string]string, f *os.File, offset, n int64) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if rc.conn == nil {
		c, err := net.DialTimeout("tcp", u.Host, 60*time.Second)
		if err != nil {
			return nil, err
		}
		rc.conn, rc.br = c.(*net.TCPConn), bufio.NewReaderSize(c, 64<<10)
	}
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ncr-bench-loadgen\r\nContent-Length: %d\r\n",
		method, u.RequestURI(), u.Host, n)
	for k, v := range hdr {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v)
	}
	if authorization != "" {
		fmt.Fprintf(&head, "Authorization: %s\r\n", authorization)
	}
	head.WriteString("\r\n")
	if _, err := rc.conn.Write([]byte(head.String())); err != nil {
		rc.close()
		return nil, err
	}
	if n > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return nil, err
		}
		sent, err := rc.conn.ReadFrom(&io.LimitedReader{R: f, N: n}) // sendfile
		if err == nil && sent != n {
			err = fmt.Errorf("sent %d of %d bytes", sent, n)
		}
		if err != nil {
			rc.close()
			return nil, err
		}
	}
	req := &http.Request{Method: method, URL: u}
	resp, err := http.ReadResponse(rc.br, req)
	if err != nil {
		rc.close()
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		rc.close()
	}
	return resp, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func percentiles(samples []time.Duration) map[string]float64 {
	if len(samples) == 0 {
		return nil
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	at := func(p float64) float64 {
		i := int(p * float64(len(samples)-1))
		return float64(samples[i].Microseconds()) / 1e3
	}
	return map[string]float64{"p50": at(0.50), "p99": at(0.99), "max": at(1)}
}

func pushStreams(base *url.URL, repo, file string, offsets []int64, digests []string, size, chunk int64) result {
	res := result{Mode: "push-streams"}
	errs := newTally()
	c := client(len(offsets), true)
	locations := make([]string, len(offsets))
	for i := range offsets {
		loc, err := startUpload(c, base, repo)
		if err != nil {
			errs.add("connect", "stream %d: %v", i, err)
			return finishResult(res, errs)
		}
		locations[i] = loc
	}
	var requests, sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range offsets {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			f, err := os.Open(file)
			if err != nil {
				errs.add("connect", "stream %d: %v", i, err)
				return
			}
			defer f.Close()
			rc := &rawConn{}
			defer rc.close()
			octets := map[string]string{"Content-Type": "application/octet-stream"}
			loc := locations[i]
			var length int64 // bytes in the final PUT
			if chunk > 0 {
				for first := int64(0); first < size; first += chunk {
					n := min(chunk, size-first)
					hdr := map[string]string{"Content-Type": "application/octet-stream",
						"Content-Range": fmt.Sprintf("%d-%d", first, first+n-1)}
					resp, err := rc.send("PATCH", loc, hdr, f, offsets[i]+first, n)
					requests.Add(1)
					if err != nil {
						errs.add("connect", "stream %d PATCH %d: %v", i, first, err)
						return
					}
					if resp.StatusCode != http.StatusAccepted {
						errs.add("status", "stream %d: PATCH %d -> %d", i, first, resp.StatusCode)
						return
					}
					sent.Add(n)
					if loc, err = resolve(base, resp.Header.Get("Location")); err != nil {
						errs.add("status", "stream %d PATCH: %v", i, err)
						return
					}
				}
			} else {
				length = size
			}
			resp, err := rc.send("PUT", withDigest(loc, digests[i]), octets, f, offsets[i], length)
			requests.Add(1)
			if err != nil {
				errs.add("connect", "stream %d PUT: %v", i, err)
				return
			}
			if resp.StatusCode != http.StatusCreated {
				errs.add("status", "stream %d: PUT ?digest= -> %d", i, resp.StatusCode)
				return
			}
			sent.Add(length)
			if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != digests[i] {
				errs.add("digest", "stream %d: server computed %s, want %s", i, got, digests[i])
			}
		}(i)
	}
	wg.Wait()
	res.WallSeconds = time.Since(start).Seconds()
	res.Requests, res.Bytes = requests.Load(), sent.Load()
	for i, d := range digests {
		if err := headBlob(c, base, repo, d, size); err != nil {
			errs.add("missing", "stream %d: %v", i, err)
		} else {
			res.OK++
			res.Verified++
		}
	}
	return finishResult(res, errs)
}

func pullStreams(base *url.URL, repo string, digests []string, size int64) result {
	res := result{Mode: "pull-streams"}
	errs := newTally()
	c := client(len(digests), true)
	var got, ok atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i, d := range digests {
		wg.Add(1)
		go func(i int, d string) {
			defer wg.Done()
			resp, err := do(c, "GET", base.String()+"/v2/"+repo+"/blobs/"+d, nil, 0, nil)
			if err != nil {
				errs.add("connect", "stream %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			n, err := drain(resp.Body, make([]byte, 1<<20), nil)
			got.Add(n)
			switch {
			case resp.StatusCode != http.StatusOK:
				errs.add("status", "stream %d: GET -> %d", i, resp.StatusCode)
			case err != nil || n != size:
				errs.add("short", "stream %d: %d of %d bytes (%v)", i, n, size, err)
			case resp.Header.Get("Docker-Content-Digest") != "" && resp.Header.Get("Docker-Content-Digest") != d:
				errs.add("digest", "stream %d: Docker-Content-Digest %s", i, resp.Header.Get("Docker-Content-Digest"))
			default:
				ok.Add(1)
			}
		}(i, d)
	}
	wg.Wait()
	res.WallSeconds = time.Since(start).Seconds()
	res.Requests, res.Bytes, res.OK = int64(len(digests)), got.Load(), ok.Load()
	return finishResult(res, errs)
}

func pushSmall(base *url.URL, repo string, count, size, clients int) result {
	res := result{Mode: "push-small"}
	errs := newTally()
	bodies := make([][]byte, count)
	digests := make([]string, count)
	for i := range bodies {
		bodies[i] = make([]byte, size)
		rand.Read(bodies[i])
		sum := sha256.Sum256(bodies[i])
		digests[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	c := client(clients, true)
	var next, requests, ok atomic.Int64
	latencies := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				t0 := time.Now()
				loc, err := startUpload(c, base, repo)
				requests.Add(1)
				if err != nil {
					errs.add("status", "blob %d: %v", i, err)
					continue
				}
				resp, err := do(c, "PUT", withDigest(loc, digests[i]), io.NopCloser(bytes.NewReader(bodies[i])),
					int64(size), map[string]string{"Content-Type": "application/octet-stream"})
				requests.Add(1)
				if err != nil {
					errs.add("connect", "blob %d PUT: %v", i, err)
					continue
				}
				if err := finish(resp, http.StatusCreated, "PUT ?digest="); err != nil {
					errs.add("status", "blob %d: %v", i, err)
					continue
				}
				latencies[w] = append(latencies[w], time.Since(t0))
				ok.Add(1)
			}
		}(w)
	}
	wg.Wait()
	res.WallSeconds = time.Since(start).Seconds()
	res.Requests, res.OK, res.Bytes = requests.Load(), ok.Load(), ok.Load()*int64(size)
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	res.LatencyMs = percentiles(all)
	// every blob must be there afterwards (untimed)
	next.Store(0)
	var verified atomic.Int64
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				if err := headBlob(c, base, repo, digests[i], int64(size)); err != nil {
					errs.add("missing", "blob %d: %v", i, err)
				} else {
					verified.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res.Verified = verified.Load()
	return finishResult(res, errs)
}

// together runs client(0..n-1) in goroutines released at the same moment. It answers the wall time from the
// release to the last return, and the latency percentiles of the clients that returned true (ok).
func together(n int, client func(i int) bool) (float64, map[string]float64) {
	latencies := make([]time.Duration, n)
	done := make([]bool, n)
	release := make(chan struct{})
	var ready, wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		ready.Add(1)
		go func(i int) {
			defer wg.Done()
			ready.Done()
			<-release
			t0 := time.Now()
			if client(i) {
				latencies[i], done[i] = time.Since(t0), true
			}
		}(i)
	}
	ready.Wait()
	start := time.Now()
	close(release)
	wg.Wait()
	var all []time.Duration
	for i, l := range latencies {
		if done[i] {
			all = append(all, l)
		}
	}
	return time.Since(start).Seconds(), percentiles(all)
}

func pullMany(base *url.URL, repo, digest string, size int64, clients, verifyEvery int) result {
	res := result{Mode: "pull-many"}
	errs := newTally()
	c := client(clients, false) // one connection per client
	var ok, got, verified atomic.Int64
	res.WallSeconds, res.LatencyMs = together(clients, func(i int) bool {
		resp, err := do(c, "GET", base.String()+"/v2/"+repo+"/blobs/"+digest, nil, 0, nil)
		if err != nil {
			errs.add("connect", "client %d: %v", i, err)
			return false
		}
		defer resp.Body.Close()
		var h = sha256.New()
		check := verifyEvery > 0 && i%verifyEvery == 0
		var sink io.Writer
		if check {
			sink = h
		}
		n, err := drain(resp.Body, make([]byte, 64<<10), sink)
		got.Add(n)
		switch {
		case resp.StatusCode != http.StatusOK:
			errs.add("status", "client %d: GET -> %d", i, resp.StatusCode)
		case err != nil || n != size:
			errs.add("short", "client %d: %d of %d bytes (%v)", i, n, size, err)
		case resp.Header.Get("Docker-Content-Digest") != "" && resp.Header.Get("Docker-Content-Digest") != digest:
			errs.add("digest", "client %d: Docker-Content-Digest %s", i, resp.Header.Get("Docker-Content-Digest"))
		case check && "sha256:"+hex.EncodeToString(h.Sum(nil)) != digest:
			errs.add("digest", "client %d: body does not hash to %s", i, digest)
		default:
			if check {
				verified.Add(1)
			}
			ok.Add(1)
			return true
		}
		return false
	})
	res.Requests, res.OK, res.Bytes, res.Verified = int64(clients), ok.Load(), got.Load(), verified.Load()
	return finishResult(res, errs)
}

// failure is why one request of a client failed: an error kind of the tally, and a message.
type failure struct{ kind, msg string }

// getVerified GETs u and checks the answer: a 200 whose whole body (as long as Content-Length says) hashes to digest.
// With keep, the body is returned as well.
func getVerified(c *http.Client, u string, hdr map[string]string, digest string, keep bool) ([]byte, int64, *failure) {
	resp, err := do(c, "GET", u, nil, 0, hdr)
	if err != nil {
		return nil, 0, &failure{"connect", err.Error()}
	}
	defer resp.Body.Close()
	h := sha256.New()
	var body bytes.Buffer
	var sink io.Writer = h
	if keep {
		sink = io.MultiWriter(h, &body)
	}
	n, err := drain(resp.Body, make([]byte, 256<<10), sink)
	switch {
	case resp.StatusCode != http.StatusOK:
		return nil, n, &failure{"status", fmt.Sprintf("GET %s -> %d", u, resp.StatusCode)}
	case err != nil || (resp.ContentLength >= 0 && n != resp.ContentLength):
		return nil, n, &failure{"short", fmt.Sprintf("GET %s: %d of %d bytes (%v)", u, n, resp.ContentLength, err)}
	case "sha256:"+hex.EncodeToString(h.Sum(nil)) != digest:
		return nil, n, &failure{"digest", fmt.Sprintf("GET %s: body does not hash to %s", u, digest)}
	}
	return body.Bytes(), n, nil
}

type descriptor struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

func pullImage(base *url.URL, repo, reference, digest string, clients int) result {
	res := result{Mode: "pull-image"}
	errs := newTally()
	accept := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json, " +
		"application/vnd.docker.distribution.manifest.v2+json"}
	prefix := base.String() + "/v2/" + repo
	var ok, got, requests, verified atomic.Int64
	res.WallSeconds, res.LatencyMs = together(clients, func(i int) bool {
		c := client(8, true)
		defer c.Transport.(*http.Transport).CloseIdleConnections()
		body, n, f := getVerified(c, prefix+"/manifests/"+reference, accept, digest, true)
		requests.Add(1)
		got.Add(n)
		if f != nil {
			errs.add(f.kind, "client %d: %s", i, f.msg)
			return false
		}
		var m struct {
			Config descriptor   `json:"config"`
			Layers []descriptor `json:"layers"`
		}
		if err := json.Unmarshal(body, &m); err != nil || m.Config.Digest == "" {
			errs.add("status", "client %d: not an image manifest (%v)", i, err)
			return false
		}
		var failed atomic.Bool
		var each sync.WaitGroup
		for _, b := range append([]descriptor{m.Config}, m.Layers...) {
			each.Add(1)
			go func(b descriptor) {
				defer each.Done()
				_, n, f := getVerified(c, prefix+"/blobs/"+b.Digest, nil, b.Digest, false)
				requests.Add(1)
				got.Add(n)
				if f == nil && n != b.Size {
					f = &failure{"short", fmt.Sprintf("blob %s: %d bytes, the manifest says %d", b.Digest, n, b.Size)}
				}
				if f != nil {
					failed.Store(true)
					errs.add(f.kind, "client %d: %s", i, f.msg)
					return
				}
				verified.Add(1)
			}(b)
		}
		each.Wait()
		if failed.Load() {
			return false
		}
		ok.Add(1)
		return true
	})
	res.Requests, res.OK, res.Bytes, res.Verified = requests.Load(), ok.Load(), got.Load(), verified.Load()
	return finishResult(res, errs)
}

func finishResult(res result, errs *tally) result {
	errs.mu.Lock()
	defer errs.mu.Unlock()
	res.Errors = errs.counts
	res.FirstErrors = errs.first
	if res.FirstErrors == nil {
		res.FirstErrors = []string{}
	}
	return res
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen push-streams|pull-streams|push-small|pull-many|pull-image [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	rawURL := fs.String("url", "", "registry base URL, e.g. http://127.0.0.1:5000")
	repo := fs.String("repo", "", "repository")
	file := fs.String("file", "", "push-streams: the file the blobs are read from")
	offsets := fs.String("offsets", "", "push-streams: comma list of each blob's offset in -file")
	digests := fs.String("digests", "", "push-streams, pull-streams: comma list of the blobs' digests")
	digest := fs.String("digest", "", "pull-many: the blob's digest; pull-image: the manifest's")
	reference := fs.String("reference", "", "pull-image: the manifest's tag or digest")
	size := fs.Int64("size", 0, "bytes per blob")
	chunk := fs.Int64("chunk", 0, "push-streams: PATCH chunk size (0: monolithic PUT)")
	count := fs.Int("count", 1000, "push-small: blobs")
	clients := fs.Int("clients", 1, "push-small, pull-many, pull-image: concurrent clients")
	verifyEvery := fs.Int("verify-every", 50, "pull-many: hash every K-th body (0: none)")
	fs.Parse(os.Args[2:])
	base, err := url.Parse(strings.TrimRight(*rawURL, "/"))
	if err != nil || base.Host == "" || *repo == "" || (*size <= 0 && mode != "pull-image") {
		fmt.Fprintln(os.Stderr, "loadgen: -url, -repo and (but for pull-image) a positive -size are required")
		os.Exit(2)
	}
	var res result
	switch mode {
	case "push-streams":
		var offs []int64
		for _, s := range splitList(*offsets) {
			o, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				fmt.Fprintln(os.Stderr, "loadgen: bad offset", s)
				os.Exit(2)
			}
			offs = append(offs, o)
		}
		ds := splitList(*digests)
		if len(offs) == 0 || len(offs) != len(ds) || *file == "" {
			fmt.Fprintln(os.Stderr, "loadgen: push-streams needs -file and as many -offsets as -digests")
			os.Exit(2)
		}
		res = pushStreams(base, *repo, *file, offs, ds, *size, *chunk)
	case "pull-streams":
		res = pullStreams(base, *repo, splitList(*digests), *size)
	case "push-small":
		res = pushSmall(base, *repo, *count, int(*size), max(*clients, 1))
	case "pull-many":
		res = pullMany(base, *repo, *digest, *size, max(*clients, 1), *verifyEvery)
	case "pull-image":
		if *reference == "" || *digest == "" {
			fmt.Fprintln(os.Stderr, "loadgen: pull-image needs -reference and -digest")
			os.Exit(2)
		}
		res = pullImage(base, *repo, *reference, *digest, max(*clients, 1))
	default:
		fmt.Fprintln(os.Stderr, "loadgen: unknown mode", mode)
		os.Exit(2)
	}
	out, _ := json.Marshal(res)
	fmt.Println("BENCH-LOADGEN " + string(out))
}
