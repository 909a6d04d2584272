package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// env is what every command gets from the process: environment and output streams.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

func newRootCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	e := &env{getenv: getenv, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "coalition",
		Short:         "Coalition Exchange: the partner-coalition loyalty gateway and clearing house",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags(), getenv)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newDevCmd(e), newServeCmd(e), newMigrateCmd(e), newTourCmd(e), newVersionCmd(e),
		newPartnerCmd(e), newSettleCmd(e), newReportCmd(e), newReconCmd(e),
		newBenchSettlementCmd(e))
	root.AddCommand(newBenchCmd(e), newSoakCmd(e), newVerifyCmd(e)) // issue 6: load, correctness under faults, invariants
	root.AddCommand(newCampaignCmd(e))                              // issue 7: co-branded campaigns
	// issue 4: partner calls
	root.AddCommand(newOutboxCmd(e), newPartnerSimCmd(e))
	return root
}

// applyEnv lets COALITION_<FLAG_NAME> set any flag the command line did not set.
func applyEnv(flags *pflag.FlagSet, getenv func(string) string) error {
	var firstErr error
	flags.VisitAll(func(f *pflag.Flag) {
		name := envName(f.Name)
		v := getenv(name)
		if f.Changed || v == "" || firstErr != nil {
			return
		}
		if err := flags.Set(f.Name, v); err != nil {
			firstErr = fmt.Errorf("%s=%q: %w", name, v, err)
		}
	})
	return firstErr
}

func envName(flag string) string {
	return "COALITION_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			version, revision := "(devel)", "unknown"
			if info, ok := debug.ReadBuildInfo(); ok {
				version = info.Main.Version
				for _, s := range info.Settings {
					if s.Key == "vcs.revision" {
						revision = s.Value
					}
				}
			}
			_, err := fmt.Fprintf(e.stdout, "coalition %s (revision %s)\n", version, revision)
			return err
		},
	}
}
