// Package memlimit chooses a default soft memory limit for the Go runtime
// (GOMEMLIMIT) from the memory limit of the container the process runs in,
// the way automemlimit-style libraries do: a container killed by the OOM
// killer loses its quarantine and every client's timing, while a runtime
// that knows the limit collects harder as it nears it.
//
// It reads the limit from the process's own cgroup: memory.max (cgroup v2)
// or memory.limit_in_bytes (cgroup v1), at the process's cgroup and every
// parent up to the mount, and takes the smallest. An explicit GOMEMLIMIT in
// the environment, "off" included, is never overridden.
package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultRatio is the share of the container limit that the Go runtime and
// the engine's mapped table may use together. The rest is for what neither
// counts: the binary's text, thread stacks outside Go, page-cache pages
// charged to the container (the state file), and the runtime's own slack
// above the limit while a collection runs. See docs/RATIONALE.md, "Memory
// per client", for the measurement.
const DefaultRatio = 0.9

// Choice is what Choose decided.
type Choice struct {
	// Limit is the soft limit to set, in bytes; 0 sets none.
	Limit int64
	// Container is the container's memory limit in bytes; 0 when there is
	// none (or none was read).
	Container int64
	// Source says where the decision came from: "GOMEMLIMIT" (the
	// environment's, left alone), "cgroup v2", "cgroup v1", or "none".
	Source string
	// Path is the control file the limit was read from.
	Path string
}

// Choose returns the soft limit for a process whose cgroup files are under
// root ("/" in production) and whose environment is getenv: ratio of the
// container limit, less offHeap (memory the process maps outside the Go
// heap, which the runtime's limit does not count), but never less than a
// quarter of ratio × limit, so that a table sized beyond the container
// still leaves the heap room to work (the caller warns; see Tight).
func Choose(root string, getenv func(string) string, ratio float64, offHeap int64) (Choice, error) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		return Choice{Source: "GOMEMLIMIT"}, nil
	}
	limit, file, version, err := containerLimit(root)
	if err != nil || limit == 0 {
		return Choice{Source: "none"}, err
	}
	share := int64(ratio * float64(limit))
	return Choice{
		Limit:     max(share-offHeap, share/4),
		Container: limit,
		Source:    version,
		Path:      file,
	}, nil
}

// Tight reports whether offHeap takes more than three quarters of ratio ×
// the container limit, so that Choose had to keep a floor for the heap: the
// container is too small for the table (--max-clients).
func (c Choice) Tight(ratio float64, offHeap int64) bool {
	return c.Container > 0 && offHeap > int64(0.75*ratio*float64(c.Container))
}

// unlimited is the smallest value a cgroup v1 file holds to mean "no
// limit" (the kernel writes the largest page-aligned int64).
const unlimited = 1 << 62

// containerLimit returns the smallest memory limit on the process's cgroup
// and its parents, the control file it came from, and the cgroup version,
// or 0 when there is none.
func containerLimit(root string) (int64, string, string, error) {
	mounts, err := cgroupMounts(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return 0, "", "", err
	}
	groups, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, "", "", fmt.Errorf("read cgroup: %w", err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(groups)), "\n") {
		// hierarchy-ID:controllers:path; v2 is "0::path".
		id, rest, _ := strings.Cut(line, ":")
		controllers, group, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		var m mount
		var file, version string
		switch {
		case id == "0" && controllers == "":
			m, file, version = mounts.v2, "memory.max", "cgroup v2"
		case hasController(controllers, "memory"):
			m, file, version = mounts.v1memory, "memory.limit_in_bytes", "cgroup v1"
		default:
			continue
		}
		if m.point == "" {
			continue
		}
		limit, at, err := smallestLimit(root, m, group, file)
		if err != nil {
			return 0, "", "", err
		}
		if limit > 0 {
			return limit, at, version, nil
		}
	}
	return 0, "", "", nil
}

// mount is where a cgroup hierarchy is mounted: point in the file system,
// showing the hierarchy from root (inside a cgroup namespace, the
// container's own group).
type mount struct{ root, point string }

type mounts struct{ v2, v1memory mount }

// cgroupMounts finds the cgroup v2 mount and the cgroup v1 memory mount in
// a mountinfo file.
func cgroupMounts(file string) (mounts, error) {
	f, err := os.Open(file)
	if err != nil {
		return mounts{}, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var ms mounts
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root point options [optional...] - type source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 > len(fields) {
			continue
		}
		m := mount{root: unescape(fields[3]), point: unescape(fields[4])}
		switch fsType := fields[sep+1]; {
		case fsType == "cgroup2" && ms.v2.point == "":
			ms.v2 = m
		case fsType == "cgroup" && hasController(fields[sep+3], "memory") && ms.v1memory.point == "":
			ms.v1memory = m
		}
	}
	return ms, sc.Err()
}

// hasController reports whether the comma-separated list holds name.
func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// smallestLimit reads file in the group's directory under m and in each
// parent up to the mount point, and returns the smallest limit with the
// file it came from (0: unlimited everywhere). A group outside the
// mount's root (the host's view of another namespace) is read at the
// mount point.
func smallestLimit(root string, m mount, group, file string) (int64, string, error) {
	top := path.Clean(m.root)
	rel, ok := strings.CutPrefix(path.Clean(group), top)
	if !ok || top != "/" && rel != "" && rel[0] != '/' {
		rel = "/" // outside, or beside it: /kubepods-burst is not under /kubepods
	}
	var best int64
	var at string
	for dir := path.Clean("/" + rel); ; dir = path.Dir(dir) {
		p := filepath.Join(root, m.point, dir, file)
		v, err := readLimit(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// The root group has no limit file in v2.
		case err != nil:
			return 0, "", err
		case v > 0 && (best == 0 || v < best):
			best, at = v, p
		}
		if dir == "/" {
			return best, at, nil
		}
	}
}

// readLimit reads a limit file: bytes, or 0 for "max" and v1's unlimited.
func readLimit(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a byte count", file, s)
	}
	if v >= unlimited || v <= 0 {
		return 0, nil
	}
	return v, nil
}
