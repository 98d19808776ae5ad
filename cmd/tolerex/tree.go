package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/tolerex/tolerex/actors/tree"
)

func newTreeCommand() *cobra.Command {
	var (
		adminAddr string
		watch     bool
		interval  time.Duration
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "tree",
		Short: "Print the live supervision tree of every node",
		Long: `Print the live supervision tree of every node of a cluster, as seen by the
gateway whose admin address is given: actor names, what each does, how often
each was restarted and how many messages wait in its mailbox. --watch redraws
it every --interval until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return fmt.Errorf("--interval must be positive")
			}
			url := "http://" + adminAddr + "/api/tree"
			out := cmd.OutOrStdout()
			if !watch {
				view, err := fetchTree(cmd.Context(), url)
				if err != nil {
					return err
				}
				return printTree(out, view, asJSON)
			}
			ticker := time.NewTicker(interval)
			defer ticker.Stop()
			for {
				view, err := fetchTree(cmd.Context(), url)
				fmt.Fprint(out, "\033[H\033[2J") // clear the screen
				fmt.Fprintf(out, "tolerex tree  %s  every %s  (Ctrl-C to stop)\n\n", time.Now().Format(time.TimeOnly), interval)
				if err != nil {
					fmt.Fprintln(out, "error:", err)
				} else if err := printTree(out, view, asJSON); err != nil {
					return err
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-ticker.C:
				}
			}
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&adminAddr, "admin-addr", "127.0.0.1:8000", "the gateway's admin address")
	fs.BoolVar(&watch, "watch", false, "refresh until interrupted")
	fs.DurationVar(&interval, "interval", time.Second, "refresh interval with --watch")
	fs.BoolVar(&asJSON, "json", false, "print the JSON from /api/tree")
	return cmd
}

func fetchTree(ctx context.Context, url string) (tree.ClusterView, error) {
	var view tree.ClusterView
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return view, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return view, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return view, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return view, fmt.Errorf("get %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &view); err != nil {
		return view, fmt.Errorf("decode %s: %w", url, err)
	}
	return view, nil
}

func printTree(w io.Writer, view tree.ClusterView, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(view)
	}
	for _, node := range view.Nodes {
		title := node.Role + "  " + node.NodeAddress
		if node.MemberID != "" {
			title = node.Role + " " + node.MemberID + "  " + node.NodeAddress
		}
		if r := node.Raft; r != nil {
			switch {
			case r.Problem != "":
				title += "  (Raft: cannot run: " + shorten(r.Problem, 80) + ")"
			case r.Leader:
				title += fmt.Sprintf("  (Raft LEADER, term %d, applied %d)", r.Term, r.Applied)
			default:
				title += fmt.Sprintf("  (Raft %s, term %d, applied %d)", r.State, r.Term, r.Applied)
			}
		}
		if node.Error != "" {
			title += "  (" + node.Error + ")"
		}
		fmt.Fprintln(w, title)
		for _, a := range node.Actors {
			printActor(w, a, "  ", "  ")
		}
		fmt.Fprintln(w)
	}
	return nil
}

// printActor prints one actor line and its children with box-drawing
// branches; prefix starts this line, childPrefix the lines below it.
func printActor(w io.Writer, a tree.ActorView, prefix, childPrefix string) {
	name := prefix + a.ID
	pad := max(1, 40-utf8.RuneCountInString(name))
	line := fmt.Sprintf("%s%s%-11s restarts=%-3d mailbox=%d", name, strings.Repeat(" ", pad), a.Kind, a.Restarts, a.Mailbox)
	if a.Stopped {
		line += "  STOPPED"
	}
	if f := a.LastFailure; f != nil {
		line += fmt.Sprintf("  last crash %s (%d in all): %s", f.At.Local().Format("15:04:05"), f.Count, shorten(f.Reason, 100))
	}
	fmt.Fprintln(w, line)
	for i, c := range a.Children {
		if i == len(a.Children)-1 {
			printActor(w, c, childPrefix+"└─ ", childPrefix+"   ")
		} else {
			printActor(w, c, childPrefix+"├─ ", childPrefix+"│  ")
		}
	}
}

// shorten cuts text to at most n runes, on one line.
func shorten(text string, n int) string {
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) <= n {
		return text
	}
	return string([]rune(text)[:n-1]) + "…"
}
