//go:build !unix

package listen

// OpenFileLimit returns false: this system has no descriptor limit to fit
// the connection caps into.
func OpenFileLimit() (uint64, bool) { return 0, false }
