// Package flowlocktest is the harness the black-box suites under test/
// share: it builds the module's commands once per test binary, starts
// flowlock-authz (or any other program) as a real process, reads where the
// service listens from its JSON "listening" log line, keeps the process's
// output to show when a test fails, and stops every process by its PID,
// SIGTERM first and SIGKILL if that is ignored.
//
// A suite's TestMain builds what it needs:
//
//	func TestMain(m *testing.M) { os.Exit(flowlocktest.Main(m, "flowlock-authz")) }
//
// and its tests start the service on free loopback ports:
//
//	svc := flowlocktest.Start(t, flowlocktest.Bin("flowlock-authz"), "--demo")
//	code, body := svc.API(t, "GET", "/api/v1/quarantine", "", "")
//
// The package speaks to Flow Lock only as a client would, and imports none
// of the module's internal packages.
package flowlocktest
