package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
)

// clientOptions are the flags of commands that talk to a running gateway over mTLS, like
// `cockroach sql --certs-dir`.
type clientOptions struct {
	addr     string
	certsDir string
	as       string
}

func (o *clientOptions) register(cmd *cobra.Command, defaultAs string) {
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:7443", "gateway gRPC address")
	f.StringVar(&o.certsDir, "certs-dir", filepath.Join(os.TempDir(), "coalition-dev", "certs"), "directory with ca.crt and <identity>.crt/.key")
	f.StringVar(&o.as, "as", defaultAs, "identity to call as: the file name of its certificate in --certs-dir without .crt")
}

// dial opens an mTLS connection to the gateway as the chosen identity.
func (o *clientOptions) dial() (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return nil, fmt.Errorf("--addr %q: %w", o.addr, err)
	}
	cfg, err := tlsconfig.LoadClient(o.certsDir, o.as, host)
	if err != nil {
		return nil, fmt.Errorf("certificates for %q in %s: %w", o.as, o.certsDir, err)
	}
	return grpc.NewClient(o.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// with dials the gateway, runs fn on the connection and closes it.
func (o *clientOptions) with(fn func(conn *grpc.ClientConn) error) error {
	conn, err := o.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(conn)
}
