package main

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// readyAddrOf returns the gRPC address a soakGateway started with --grpc-addr 127.0.0.1:0 bound.
func readyAddrOf(t *testing.T, g *soakGateway) string {
	t.Helper()
	if g.boundAddr == "" {
		t.Fatal("gateway did not print its gRPC address")
	}
	return g.boundAddr
}

// breakBalance adds a point to a member's posted balance without an entry.
func breakBalance(t *testing.T, ctx context.Context, url, member string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE members SET posted = posted + 1 WHERE id = $1`, member); err != nil {
		t.Fatal(err)
	}
}

// unprivilegedTempDir makes a temporary directory that PostgreSQL, which runs unprivileged
// when the tests run as root, can use; it is removed at the end of the test.
func unprivilegedTempDir(t *testing.T, pattern string) string {
	t.Helper()
	base, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	return base
}
