package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestFlagUsagesHaveNoBackquotes walks every command's flags: pflag takes a
// backquoted word in a usage string as the flag's argument name, so
// "answered `ERROR: too many connections`" would print as
// "--max-connections ERROR: too many connections" in --help.
func TestFlagUsagesHaveNoBackquotes(t *testing.T) {
	var walk func(cmd *cobra.Command)
	checked := 0
	walk = func(cmd *cobra.Command) {
		check := func(f *pflag.Flag) {
			checked++
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage has a backquote, which garbles --help: %q", cmd.CommandPath(), f.Name, f.Usage)
			}
		}
		cmd.LocalFlags().VisitAll(check)
		cmd.PersistentFlags().VisitAll(check)
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
	if checked < 50 {
		t.Fatalf("checked only %d flags; the walk missed commands", checked)
	}
}

// TestMemberHelpSaysDataDirIsRequired: a member has no default data dir,
// so its help says the flag is required, and starting without it fails
// with an error naming the flag before anything listens.
func TestMemberHelpSaysDataDirIsRequired(t *testing.T) {
	out, err := runTolerex(t, "member", "--help")
	if err != nil {
		t.Fatalf("member --help: %v\n%s", err, out)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--data-dir") {
			line = l
		}
	}
	if !strings.Contains(line, "required") {
		t.Errorf("member --help does not say --data-dir is required: %q", line)
	}
	out, err = runTolerex(t, "member", "--insecure", "--node-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "--data-dir is required") {
		t.Errorf("member without --data-dir: err %v, want \"--data-dir is required\"\n%s", err, out)
	}
}
