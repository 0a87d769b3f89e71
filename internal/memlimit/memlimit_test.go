package memlimit

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeRoot lays out files (path → content) under a temporary root.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	v2Mounts = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
	v1Mounts = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n" +
		"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n" +
		"35 31 0:32 /kubepods /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
)

func noEnv(string) string { return "" }

func TestChoose(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name    string
		files   map[string]string
		env     string
		offHeap int64
		want    Choice
	}{{
		name: "cgroup v2 in a namespace",
		files: map[string]string{
			"proc/self/mountinfo":                v2Mounts,
			"proc/self/cgroup":                   "0::/\n",
			"sys/fs/cgroup/memory.max":           "1073741824\n",
			"sys/fs/cgroup/memory.current":       "0\n",
			"sys/fs/cgroup/unrelated/memory.max": "1\n",
		},
		want: Choice{Limit: 966367641, Container: 1 << 30, Source: "cgroup v2", Path: "sys/fs/cgroup/memory.max"},
	}, {
		name: "cgroup v2, the parent is tighter",
		files: map[string]string{
			"proc/self/mountinfo":                 v2Mounts,
			"proc/self/cgroup":                    "0::/app/worker\n",
			"sys/fs/cgroup/app/worker/memory.max": "max\n",
			"sys/fs/cgroup/app/memory.max":        "536870912\n",
		},
		offHeap: 100 * mib,
		want:    Choice{Limit: 483183820 - 100*mib, Container: 512 * mib, Source: "cgroup v2", Path: "sys/fs/cgroup/app/memory.max"},
	}, {
		name: "cgroup v2 without a limit",
		files: map[string]string{
			"proc/self/mountinfo":      v2Mounts,
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		},
		want: Choice{Source: "none"},
	}, {
		name: "cgroup v1, the group under the mount's root",
		files: map[string]string{
			"proc/self/mountinfo": v1Mounts,
			"proc/self/cgroup":    "4:memory:/kubepods/pod1\n3:cpu:/kubepods/pod1\n",
			"sys/fs/cgroup/memory/pod1/memory.limit_in_bytes": "268435456\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":      "9223372036854771712\n",
		},
		want: Choice{Limit: 241591910, Container: 256 * mib, Source: "cgroup v1", Path: "sys/fs/cgroup/memory/pod1/memory.limit_in_bytes"},
	}, {
		// /kubepods-burst only begins with the mount's root /kubepods: it is
		// outside it, read at the mount point, not at "-burst/pod1" below it.
		name: "cgroup v1, a group beside the mount's root",
		files: map[string]string{
			"proc/self/mountinfo": v1Mounts,
			"proc/self/cgroup":    "4:memory:/kubepods-burst/pod1\n",
			"sys/fs/cgroup/memory/-burst/pod1/memory.limit_in_bytes": "134217728\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":             "268435456\n",
		},
		want: Choice{Limit: 241591910, Container: 256 * mib, Source: "cgroup v1", Path: "sys/fs/cgroup/memory/memory.limit_in_bytes"},
	}, {
		name: "cgroup v1 unlimited",
		files: map[string]string{
			"proc/self/mountinfo":                        v1Mounts,
			"proc/self/cgroup":                           "4:memory:/kubepods\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		},
		want: Choice{Source: "none"},
	}, {
		name: "the table does not fit: the heap keeps a quarter",
		files: map[string]string{
			"proc/self/mountinfo":      v2Mounts,
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "268435456\n",
		},
		offHeap: 256 * mib,
		want:    Choice{Limit: 241591910 / 4, Container: 256 * mib, Source: "cgroup v2", Path: "sys/fs/cgroup/memory.max"},
	}, {
		name: "an explicit GOMEMLIMIT wins",
		files: map[string]string{
			"proc/self/mountinfo":      v2Mounts,
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "1073741824\n",
		},
		env:  "off",
		want: Choice{Source: "GOMEMLIMIT"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.files)
			getenv := func(k string) string {
				if k == "GOMEMLIMIT" {
					return tc.env
				}
				return ""
			}
			got, err := Choose(root, getenv, DefaultRatio, tc.offHeap)
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != "" {
				rel, err := filepath.Rel(root, got.Path)
				if err != nil {
					t.Fatal(err)
				}
				got.Path = rel
			}
			if got != tc.want {
				t.Errorf("Choose = %+v, want %+v", got, tc.want)
			}
			// Only the table that does not fit is tight.
			if tight := got.Tight(DefaultRatio, tc.offHeap); tight != (tc.offHeap == 256*mib) {
				t.Errorf("Tight = %v", tight)
			}
		})
	}
}

func TestChooseBadFile(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/self/mountinfo":      v2Mounts,
		"proc/self/cgroup":         "0::/\n",
		"sys/fs/cgroup/memory.max": "lots\n",
	})
	if _, err := Choose(root, noEnv, DefaultRatio, 0); err == nil {
		t.Error("Choose accepted memory.max \"lots\"")
	}
}

// TestChooseHere reads this machine's own cgroup: whatever it finds, it
// must not fail.
func TestChooseHere(t *testing.T) {
	c, err := Choose("/", noEnv, DefaultRatio, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", c)
}
