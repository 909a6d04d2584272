package sqlstoretest

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// queryString runs sql on url and returns the single text result.
func queryString(t *testing.T, url, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestNewDatabaseParallel(t *testing.T) {
	for _, name := range []string{"a", "b", "c", "d"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := NewDatabase(t)
			db := queryString(t, url, "SELECT current_database()")
			if !strings.HasPrefix(db, "t_testnewdatabaseparallel_"+name+"_") {
				t.Errorf("database %q not named after the test", db)
			}
			if got := queryString(t, url, "SHOW transaction_isolation"); got != "serializable" {
				t.Errorf("transaction_isolation = %q, want serializable", got)
			}
			tables := queryString(t, url,
				"SELECT count(*)::TEXT FROM information_schema.tables WHERE table_schema = 'public'")
			if tables != "0" {
				t.Errorf("fresh database has %s tables", tables)
			}
		})
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		name = queryString(t, NewDatabase(t), "SELECT current_database()")
	})
	if t.Failed() || name == "" {
		t.Skip("inner test did not get a database")
	}
	tg, err := getTarget()
	if err != nil {
		t.Fatal(err)
	}
	left := queryString(t, tg.adminURL, "SELECT count(*)::TEXT FROM pg_catalog.pg_database WHERE datname = $1", name)
	if left != "0" {
		t.Errorf("database %s still exists after its test's cleanup", name)
	}
}

func TestDatabaseName(t *testing.T) {
	valid := regexp.MustCompile(`^t(_[a-z0-9]+)*_[0-9a-f]{8}$`)
	for _, in := range []string{"TestX", "TestX/sub_test#01", strings.Repeat("TestLong/", 20), "Ünïcode//--", "///"} {
		got := databaseName(in)
		if len(got) > maxNameLen || !valid.MatchString(got) || strings.Contains(got, "__") {
			t.Errorf("databaseName(%q) = %q", in, got)
		}
		if databaseName(in) == got {
			t.Errorf("databaseName(%q) repeated %q", in, got)
		}
	}
}
