package dashboard

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"github.com/flowlock/flowlock/internal/untrusted"
)

// ErrNotPersisted marks a Backend error from Ban, Release or Extend that
// came after the change took effect: the change is enforced but could not
// be saved (a full disk, a read-only volume), so it lasts until a restart
// unless a later write saves it. The dashboard answers such a change with
// success, 200, and says so in the body:
//
//	{..., "persisted": false, "persist_error": "write: no space left on device"}
//
// A 500 would be a lie here: the operator would retry or give up on a ban
// that is in force. On success the two fields are left out.
var ErrNotPersisted = errors.New("change not persisted")

// persistence is the part of an admin answer that says a change was not
// saved; both fields are empty (and left out) when it was.
type persistence struct {
	Persisted    *bool  `json:"persisted,omitempty"`
	PersistError string `json:"persist_error,omitempty"`
}

// notPersisted returns the persistence fields for err, a Backend error
// wrapping ErrNotPersisted, or zero fields for nil.
//
// The reason is only the operation and the operating system's words ("write:
// no space left on device"): the full error names files and the backend may
// wrap it with an identity, neither of which belongs in an answer that an
// admin script may log or forward; the flowlock-authz log has the rest.
func notPersisted(err error) persistence {
	if err == nil {
		return persistence{}
	}
	no := false
	return persistence{Persisted: &no, PersistError: persistReason(err)}
}

// persistReason says in a few words why a state write failed.
func persistReason(err error) string {
	const unknown = "state file not written; see the flowlock-authz log"
	var (
		pe    *fs.PathError
		le    *os.LinkError
		errno syscall.Errno
		msg   string
	)
	switch {
	case errors.As(err, &pe):
		msg = pe.Op + ": " + pe.Err.Error()
	case errors.As(err, &le):
		msg = le.Op + ": " + le.Err.Error()
	case errors.As(err, &errno):
		msg = errno.Error()
	default:
		return unknown
	}
	if !untrusted.Printable(msg) {
		return unknown
	}
	return untrusted.Clip(msg, 120)
}
