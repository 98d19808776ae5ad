package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tolerex/tolerex/e2e/chaos"
	"github.com/tolerex/tolerex/e2e/chaos/nemesis"
)

func newChaosCommand() *cobra.Command {
	cfg := chaos.Defaults()
	var jsonOut bool
	var seed int64
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run the fault suite: clients, a nemesis and a linearizability check of the history",
		Long: `Start a cluster of real processes (this binary), drive concurrent clients
against every gateway while a seeded plan of faults runs (kills, pauses,
partitions, whole-cluster kills, full disks), heal, SIGKILL and restart the
whole cluster, read every id, and check the history for linearizability
with porcupine. The run fails (exit status 1) on a violation (the HTML
visualization and the nodes' logs go to --out), a node that exited on its
own, a cluster that did not recover, or a throughput under
--min-throughput. Partitions and disk faults need root and iptables; the
tool always removes them, and what a crashed run left, at the start.

Fault mixes for --faults: member, gateway, quorum, mixed, cluster-kill,
kills, pauses, partitions, disk, gateway-disk, none, or kind:target pairs (kinds: kill,
pause, partition, cluster-kill, disk-full; targets: member, gateway, leader,
minority, majority, leader-gateways (the leader cut off from the other
gateways only: partitions), all), comma-separated. disk-full aims at
member, gateway or leader. The disk and gateway-disk mixes are not in
mixed: they mount a small filesystem for every member (or gateway), which
needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := nemesis.ParseFaults(cfg.Faults); err != nil {
				return err
			}
			if !cmd.Flags().Changed("seed") {
				seed = time.Now().UnixNano()
			}
			cfg.Seed = uint64(seed)
			if cfg.OutDir == "" {
				cfg.OutDir = fmt.Sprintf("chaos-out/%d", cfg.Seed)
			}
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own executable: %w", err)
			}
			cfg.Binary = bin
			out := cmd.OutOrStdout()
			if !jsonOut {
				cfg.Log = out
			} else {
				cfg.Log = cmd.ErrOrStderr()
			}
			fmt.Fprintf(cfg.Log, "chaos: seed %d (reproduce the fault plan with --seed %d)\n", cfg.Seed, cfg.Seed)
			sum, err := chaos.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if jsonOut {
				if err := sum.WriteJSON(out); err != nil {
					return err
				}
			} else {
				fmt.Fprint(out, sum.Text())
			}
			if !sum.Passed {
				return errors.New("chaos run failed; see the summary above")
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.Int64Var(&seed, "seed", 0, "seed of the fault plan and the clients (default: from the clock; printed)")
	fs.StringVar(&cfg.Faults, "faults", cfg.Faults, "fault mix (see above)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the clients run under faults")
	fs.IntVar(&cfg.Gateways, "gateways", cfg.Gateways, "gateway processes, one Raft group (1, 3 or 5)")
	fs.IntVar(&cfg.Members, "members", cfg.Members, "member processes")
	fs.IntVar(&cfg.Tolerance, "tolerance", cfg.Tolerance, "members that store every message")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent clients, one request at a time each")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "ids the clients contend on (1..keys)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "most operations started per second over all clients")
	fs.IntVar(&cfg.SetPercent, "set-percent", cfg.SetPercent, "share of SET operations")
	fs.IntVar(&cfg.DelPercent, "del-percent", cfg.DelPercent, "share of DEL operations (the rest are GETs)")
	fs.DurationVar(&cfg.Interval, "fault-interval", cfg.Interval, "mean time between faults (each gap drawn from half to one and a half times it)")
	fs.DurationVar(&cfg.MinHold, "fault-min", cfg.MinHold, "shortest time a fault holds")
	fs.DurationVar(&cfg.MaxHold, "fault-max", cfg.MaxHold, "longest time a fault holds")
	fs.IntVar(&cfg.Concurrency, "concurrent-faults", cfg.Concurrency, "faults that may hold at once")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "time a client waits for a reply before its outcome is unknown")
	fs.DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", cfg.RecoveryTimeout, "time the cluster has to recover after the faults and the final restart")
	fs.BoolVar(&cfg.NoFinalKill, "no-final-kill", false, "skip the whole-cluster SIGKILL and restart before the final reads")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "time the linearizability check may take")
	fs.Float64Var(&cfg.MinThroughput, "min-throughput", cfg.MinThroughput, "definite answers per second a run must keep to count")
	fs.Int64Var(&cfg.DiskSize, "disk-size", cfg.DiskSize, "bytes of each member's small disk (disk-full faults)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level of the nodes")
	fs.StringVar(&cfg.OutDir, "out", "", "output dir for the history, plan, summary and, on failure, logs and visualization (default chaos-out/SEED)")
	fs.BoolVar(&cfg.KeepData, "keep-data", false, "keep the cluster's data dirs after the run")
	fs.BoolVar(&jsonOut, "json", false, "print the summary as JSON (progress goes to stderr)")
	return cmd
}
