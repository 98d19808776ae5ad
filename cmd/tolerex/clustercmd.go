package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/cluster"
)

// newClusterCommand groups the commands that look at and change the
// gateways' Raft group through any gateway's admin API.
func newClusterCommand() *cobra.Command {
	var adminAddr string
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and change the gateways' Raft group",
		Long: `Show and change the gateways' Raft group through any gateway's admin API
(--admin-addr). A change goes to the gateway that leads, wherever it is.`,
	}
	cmd.PersistentFlags().StringVar(&adminAddr, "admin-addr", "127.0.0.1:8000", "admin address of any gateway")
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the gateways, who leads, and how far each is in the log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st consensus.Status
			if err := adminCall(cmd.Context(), http.MethodGet, adminAddr, "/api/raft", nil, &st); err != nil {
				return err
			}
			return printRaftStatus(cmd.OutOrStdout(), &st)
		},
	}
	add := &cobra.Command{
		Use:   "add-gateway ID NODE-ADDR",
		Short: "Add a gateway to the group: as a learner first, a voter once it caught up",
		Long: `Add a gateway to the group. Start it first with --gateway-id ID,
--node-addr NODE-ADDR and --initial-cluster-state existing (and
--initial-cluster naming the running gateways): it joins as a learner,
receives the log (or a snapshot), and is promoted to voter once it has
caught up. The command waits for that, up to a minute.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("gateway id %q: want a positive number", args[0])
			}
			if err := cluster.CheckNodeAddress(args[1]); err != nil {
				return fmt.Errorf("%w (the new gateway's --node-addr)", err)
			}
			body, _ := json.Marshal(addGatewayRequest{ID: id, NodeAddress: args[1]})
			if err := adminCall(cmd.Context(), http.MethodPost, adminAddr, "/api/gateways", body, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gateway %d (%s) added; it is a voter\n", id, args[1])
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove-gateway ID",
		Short: "Remove a gateway from the group (leadership moves off it first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("gateway id %q: want a positive number", args[0])
			}
			if err := adminCall(cmd.Context(), http.MethodDelete, adminAddr, "/api/gateways/"+args[0], nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gateway %d removed; stop its process and keep its data dir out of any group\n", id)
			return nil
		},
	}
	cmd.AddCommand(status, add, remove)
	return cmd
}

// adminCall makes one request to a gateway's admin API and decodes a JSON
// answer into out (if not nil); a non-2xx answer is an error with its
// text.
func adminCall(ctx context.Context, method, adminAddr, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+adminAddr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", req.URL, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode %s: %w", req.URL, err)
		}
	}
	return nil
}

func printRaftStatus(w io.Writer, st *consensus.Status) error {
	if st.Problem != "" {
		// An error, so that scripts see it in the exit status.
		return fmt.Errorf("gateway %d cannot run: %s", st.ID, st.Problem)
	}
	lead := "none"
	if st.Lead != 0 {
		lead = fmt.Sprintf("%d (%s)", st.Lead, st.LeadAddress)
	}
	fmt.Fprintf(w, "asked gateway %d (%s); leader %s, term %d, commit %d, applied %d, last snapshot at %d\n\n",
		st.ID, st.State, lead, st.Term, st.Commit, st.Applied, st.SnapshotIndex)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNODE ADDRESS\tROLE\tMATCH\tPROGRESS\tREACHABLE")
	for _, g := range st.Gateways {
		match, progress := "-", "-"
		if g.Progress != "" {
			match, progress = strconv.FormatUint(g.Match, 10), g.Progress
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%v\n", g.ID, g.NodeAddress, g.Role, match, progress, g.Reachable)
	}
	if st.State != "leader" {
		fmt.Fprintln(tw, "(match and progress are known to the leader only)")
	}
	return tw.Flush()
}

// newRecoverCommand is the documented way out when a group lost its
// quorum for good: rebuild a group of one from a survivor's data.
func newRecoverCommand() *cobra.Command {
	var dataDir, nodeAddr string
	var id uint64
	var sync bool
	cmd := &cobra.Command{
		Use:   "recover-gateway",
		Short: "Rebuild a Raft group of one from a surviving gateway's data (quorum lost for good)",
		Long: `Rebuild the gateways' Raft group from one surviving gateway's data dir,
when a majority of the gateways is lost for good (their disks are gone) and
the group can never elect a leader again. Stop the survivor first. The
command reads the survivor's Raft log (its last snapshot and every entry
after it, including those it does not know to be committed: the lost
leader may have committed and acknowledged them; one it did not only ever
got its client an unknown outcome), moves the old log aside
(raft.before-recovery-<time>), and writes a new log whose group is this
gateway alone, holding that state. Writes the lost gateways acknowledged
that never reached the survivor are lost with them: recover from the
survivor that is furthest in the log (tolerex cluster status on each,
or the applied index in their logs).
Start the gateway again without --initial-cluster (or with itself alone),
then add new gateways with "tolerex cluster add-gateway": never restart a
lost gateway on its old data dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return recoverGateway(cmd.OutOrStdout(), dataDir, id, nodeAddr, sync)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data-dir", "", "the surviving gateway's data dir (required)")
	fs.Uint64Var(&id, "gateway-id", 1, "its gateway id in the rebuilt group")
	fs.StringVar(&nodeAddr, "node-addr", "", "its --node-addr (required)")
	fs.BoolVar(&sync, "sync", true, "fsync the new log")
	return cmd
}

func recoverGateway(w io.Writer, dataDir string, id uint64, nodeAddr string, sync bool) error {
	if dataDir == "" || nodeAddr == "" || id == 0 {
		return errors.New("--data-dir, --node-addr and a positive --gateway-id are required")
	}
	raftDir := filepath.Join(dataDir, "raft")
	state, index, term, err := consensus.LoadState(raftDir)
	if err != nil {
		return fmt.Errorf("read the survivor's log: %w", err)
	}
	if index == 0 {
		return fmt.Errorf("%s holds no committed state to recover", raftDir)
	}
	aside := fmt.Sprintf("%s.before-recovery-%s", raftDir, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(raftDir, aside); err != nil {
		return fmt.Errorf("move the old log aside: %w", err)
	}
	if err := consensus.WriteState(raftDir, id, nodeAddr, state, index, term+1, sync); err != nil {
		return fmt.Errorf("write the new log (the old one is in %s): %w", aside, err)
	}
	fmt.Fprintf(w, "recovered %d messages (the log through index %d, term %d) into a group of one: gateway %d at %s\n", state.Len(), index, term, id, nodeAddr)
	fmt.Fprintf(w, "the old log is in %s; start the gateway, then add gateways with: tolerex cluster add-gateway\n", aside)
	return nil
}
