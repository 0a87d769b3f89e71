package authz

import (
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/strmemo"
)

// names gives the lean path stable copies of the request strings that may
// outlive the Check. The wire decoder's strings point into gRPC's receive
// buffer, which is reused once the Check returns; a name identity (from
// --identity-header or --identity-jwt-claim) or a path kept as a map key,
// or queued for a background job, would then change under its holder. Go's
// map assignment even replaces a key already present with the one given,
// so copying on insert is not enough. Interning copies each distinct
// string once and hands out the copy after that, so a Check that repeats a
// known name or path allocates nothing.
//
// Memory is bounded: at most internShards × internPerShard strings of at
// most internMaxLen bytes are kept (16 MiB); a full shard starts again
// empty. A longer string is returned as it is: nothing keeps one (the
// fleet detector hashes a path longer than fleet.MaxPathName before it
// queues the note, and identity.FromName refuses a name longer than
// identity.MaxNameLen; TestInternCoversWhatIsKept), so copying it would
// only cost an allocation a Check.
type names struct{ memo *strmemo.Memo }

const (
	internShards   = 64
	internPerShard = 1024
	internMaxLen   = 256
)

func newNames() *names { return &names{memo: strmemo.New(internShards, internPerShard)} }

// intern returns a copy of s that no buffer reuse can change.
func (n *names) intern(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > internMaxLen {
		return s
	}
	return n.memo.Get(s, itself)
}

// itself is the memo's derived value for a name: the stable copy itself.
func itself(copied string) string { return copied }

// internName is intern for a value that may become a name identity (an
// identity header, a claim). One that identity.FromName refuses never does
// (ResolveWith scores the address instead), so nothing keeps it and it
// needs no copy, which for an attacker's overlong or invisible header
// would be one a Check and an entry in the memo.
func (n *names) internName(s string) string {
	if !identity.ValidName(s) {
		return s
	}
	return n.intern(s)
}
