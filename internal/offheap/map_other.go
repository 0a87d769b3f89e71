//go:build !unix

package offheap

import "errors"

// mapAnon fails: on this system every array stays on the Go heap.
func mapAnon(int) ([]byte, error) { return nil, errors.ErrUnsupported }

// unmapAnon is never called here (nothing is mapped).
func unmapAnon([]byte) {}
