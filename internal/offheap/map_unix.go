//go:build unix

package offheap

import "syscall"

// mapAnon maps size bytes of zeroed, private, anonymous memory.
func mapAnon(size int) ([]byte, error) {
	return syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// unmapAnon unmaps what mapAnon returned.
func unmapAnon(b []byte) { _ = syscall.Munmap(b) }
