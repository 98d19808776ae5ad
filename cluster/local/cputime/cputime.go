// Package cputime reads how much CPU time a local process has used, from
// Linux's /proc. The end-to-end tests use it to check that an idle node
// stays idle, and the benchmark matrix to say where a run's CPU time went.
package cputime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: Linux reports
// them in USER_HZ, which is 100 on every architecture Go supports there.
const userHZ = 100

// Of returns the user plus system CPU time process pid has used so far,
// every thread included. The kernel keeps it exactly (scaled to the
// scheduler's runtime) and reports it in 10 ms steps.
func Of(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of process %d: %w", pid, err)
	}
	d, err := parse(data)
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	return d, nil
}

// parse returns the CPU time in a /proc/PID/stat: utime and stime, fields
// 14 and 15, counted after the command name, which is in parentheses and
// may hold spaces and parentheses itself.
func parse(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in /proc/PID/stat %q", stat)
	}
	// fields[0] is field 3 (the state); utime and stime are 11 and 12 on.
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/PID/stat: %d fields after the command name", len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/PID/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
