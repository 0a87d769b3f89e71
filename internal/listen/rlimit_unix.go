//go:build unix

package listen

import "syscall"

// OpenFileLimit returns the process's soft limit on open file descriptors,
// and false when there is none to speak of (unlimited or unknown).
func OpenFileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	return uint64(lim.Cur), true // int64 on some systems; the caller ignores absurd values (infinity)
}
