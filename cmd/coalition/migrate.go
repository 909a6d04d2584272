package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

func newMigrateCmd(e *env) *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the embedded schema migrations to a database (forward only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return errors.New("--database-url (or COALITION_DATABASE_URL) is required")
			}
			pool, err := sqlstore.Open(cmd.Context(), url, 2)
			if err != nil {
				return err
			}
			defer pool.Close()
			n, err := sqlstore.Migrate(cmd.Context(), pool, newLogger(e.stderr, "text"))
			if err != nil {
				return err
			}
			v, err := sqlstore.SchemaVersion(cmd.Context(), pool)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "applied %d migrations; schema version %d\n", n, v)
			return err
		},
	}
	cmd.Flags().StringVar(&url, "database-url", "", "PostgreSQL/CockroachDB connection URL")
	return cmd
}
