// Command coalition is the one binary of Coalition Exchange: the gateway (serve), the local
// development coalition (dev), schema migrations (migrate) and the tools that talk to a
// running gateway (tour).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "coalition:", err)
		os.Exit(1)
	}
}

// run executes the command line args; it is main without the process globals.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	root := newRootCmd(getenv, stdout, stderr)
	root.AddCommand(newDocsCmd(root, &env{getenv: getenv, stdout: stdout, stderr: stderr}))
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}
