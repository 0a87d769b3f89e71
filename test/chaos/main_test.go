// Package chaos attacks the built flowlock-authz binary as an adversary
// and as chaos engineering would: attacker-sized state files and special
// files, floods of connections and of huge messages, hostile Host headers
// and identities, full disks and forged peers. Every process runs under
// address-space and file-descriptor limits (flowlocktest.Limits), so a
// regression fails the test instead of taking the machine down.
package chaos

import (
	"os"
	"testing"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

func TestMain(m *testing.M) { os.Exit(flowlocktest.Main(m, "flowlock-authz")) }

// authz is the flowlock-authz binary built by TestMain.
func authz() string { return flowlocktest.Bin("flowlock-authz") }

// bounded are the limits every service in this suite runs under unless a
// test needs tighter ones: 2 GiB of address space and 4096 descriptors.
var bounded = flowlocktest.Limits{AddressSpace: 2 << 30, OpenFiles: 4096}

// start starts the service under bounded with args.
func start(t *testing.T, args ...string) *flowlocktest.Service {
	t.Helper()
	return flowlocktest.StartLimited(t, bounded, authz(), args...)
}
