// Command tolerex is the single Tolerex binary: gateway and member nodes, a
// local development cluster, an interactive HaToKuSe client, certificate
// generation, a live supervision-tree viewer, the gateways' Raft group
// administration and the fault suite.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix starts the environment variable that can set any flag:
// --tls-dir is also read from TOLEREX_TLS_DIR.
const envPrefix = "TOLEREX_"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tolerex:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tolerex",
		Short:         "Tolerex: a fault-tolerant distributed message store",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnvironment(cmd.Flags())
		},
	}
	root.AddCommand(
		newGatewayCommand(),
		newMemberCommand(),
		newDevCommand(),
		newClientCommand(),
		newTreeCommand(),
		newCertsCommand(),
		newBenchCommand(),
		newChaosCommand(),
		newClusterCommand(),
		newRecoverCommand(),
	)
	return root
}

// applyEnvironment sets every flag the command line left unset from its
// TOLEREX_<FLAG> environment variable, if that variable is set.
func applyEnvironment(flags *pflag.FlagSet) error {
	var firstErr error
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil {
			return
		}
		name := envName(f.Name)
		value, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err := flags.Set(f.Name, value); err != nil {
			firstErr = fmt.Errorf("environment variable %s=%q: %w", name, value, err)
		}
	})
	return firstErr
}

// envName is the environment variable read for a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
