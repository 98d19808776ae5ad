package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/tolerex/tolerex/cluster/certs"
)

// newCertsCommand builds "tolerex certs": it creates the cluster CA and the
// gateway and member certificates in a TLS directory.
func newCertsCommand() *cobra.Command {
	var (
		dir   string
		hosts []string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "certs --dir DIR [--hosts h1,h2] [--force]",
		Short: "Generate the cluster CA and node certificates for mutual TLS",
		Long: `Generate a cluster CA and one certificate per node role (gateway, member)
in DIR: ca.crt, ca.key, gateway.crt, gateway.key, member.crt, member.key.
Every node certificate is valid for localhost, 127.0.0.1 and ::1 plus each
--hosts entry (an IP address or a DNS name). Keys are written with mode 0600.
Existing files are never overwritten unless --force is given.`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("--dir is required (or set %s)", envName("dir"))
			}
			paths, err := certs.Generate(dir, certs.GenerateOptions{Hosts: hosts, Force: force})
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w (use --force to replace them)", err)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, path := range paths {
				if _, err := fmt.Fprintln(out, path); err != nil {
					return fmt.Errorf("print written files: %w", err)
				}
			}
			if _, err := fmt.Fprintf(out, "start nodes with --tls-dir %s\n", dir); err != nil {
				return fmt.Errorf("print hint: %w", err)
			}
			return nil
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&dir, "dir", "", "directory to write the TLS files to (required; created 0700 if missing)")
	flags.StringSliceVar(&hosts, "hosts", nil, "extra IP addresses or DNS names for the node certificates, comma-separated")
	flags.BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}
