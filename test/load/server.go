package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// startTimeout is how long a server has to print its "listening" line.
const startTimeout = 30 * time.Second

// Server is one server process the harness started.
type Server struct {
	Name     string // the row name in the report
	GRPCAddr string
	HTTPAddr string // Flow Lock's /metrics; empty for the others
	cmd      *exec.Cmd
	log      string // file holding its output
	done     chan struct{}
}

// Launch describes how to start a server process.
type Launch struct {
	Name string
	Bin  string
	Args []string
	// Env is added to the harness's own environment (GOGC, GOMEMLIMIT).
	Env []string
	// CPUs, when set, pins the process to these CPUs with taskset(1), e.g.
	// "0" or "0-3".
	CPUs string
	// Limits bound the process (prlimit(1)), as every process the tests
	// start is.
	Limits flowlocktest.Limits
	// LogDir holds the process's output file.
	LogDir string
}

// Start starts l and waits for its JSON "listening" log line, which gives
// its addresses. The process is started as one PID: taskset and prlimit
// each exec the next program.
func Start(l Launch) (*Server, error) {
	cmd := flowlocktest.LimitedCommand(l.Limits, l.Bin, l.Args...)
	if l.CPUs != "" {
		cmd = exec.Command("taskset", append([]string{"-c", l.CPUs}, cmd.Args...)...)
	}
	cmd.Env = append(os.Environ(), "FLOWLOCK_CONFIG=")
	cmd.Env = append(cmd.Env, l.Env...)
	logPath := filepath.Join(l.LogDir, strings.ReplaceAll(l.Name, " ", "-")+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", l.Name, err)
	}
	s := &Server{Name: l.Name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if rec, ok := listening(logPath); ok {
			s.GRPCAddr, s.HTTPAddr = rec["grpc_addr"], rec["http_addr"]
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited before listening: %s", l.Name, s.Tail())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.Stop()
	return nil, fmt.Errorf("%s did not listen within %v: %s", l.Name, startTimeout, s.Tail())
}

// listening returns the string fields of the JSON "listening" record in the
// file at path, once it is there.
func listening(path string) (map[string]string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rec, ok := flowlocktest.ListeningRecord(sc.Text()); ok {
			return rec, true
		}
	}
	return nil, false
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM to the server by its PID and waits; after 20 s it
// sends SIGKILL.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Exited reports whether the server has exited.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Tail returns the end of the server's output, for error messages.
func (s *Server) Tail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTick = time.Second / 100

// CPUTime returns the user plus system CPU time the process pid has used,
// from /proc/PID/stat (all its threads).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields are counted
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// RSS returns the resident set size of process pid in bytes, from VmRSS in
// /proc/PID/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// Metric returns the value of the unlabelled Prometheus metric name on the
// server's /metrics.
func (s *Server) Metric(name string) (float64, error) {
	if s.HTTPAddr == "" {
		return 0, fmt.Errorf("%s has no /metrics", s.Name)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + s.HTTPAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("%s: no metric %s", s.Name, name)
}
