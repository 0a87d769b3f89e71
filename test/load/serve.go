package load

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// ServeMain is the body of the comparison servers' main (cmd/noop-authz and
// cmd/floor-authz): it parses -grpc-addr, serves s there with server
// reflection (so ghz and grpcurl need no proto files), prints the JSON
// "listening" line Flow Lock prints, and stops on SIGTERM or SIGINT. It
// returns the exit code.
func ServeMain(name string, s *grpc.Server) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	addr := fs.String("grpc-addr", "127.0.0.1:9191", "listen address")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	reflection.Register(s)
	line, _ := json.Marshal(map[string]string{"msg": "listening", "grpc_addr": lis.Addr().String()})
	fmt.Println(string(line))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		// A benchmark peer may keep its connections open: stop at once
		// after a short grace.
		t := time.AfterFunc(2*time.Second, s.Stop)
		s.GracefulStop()
		t.Stop()
	}()
	if err := s.Serve(lis); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
