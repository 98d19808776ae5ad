package consensus

import (
	"fmt"

	"github.com/rs/zerolog"
)

// raftLogger routes etcd raft's log output into zerolog. Raft's info
// messages (elections, leadership, snapshots) are worth keeping at info;
// its debug output is very chatty. Fatal and Panic panic, as raft expects:
// they report broken invariants.
type raftLogger struct{ log zerolog.Logger }

func (l raftLogger) Debug(v ...any)                 { l.log.Debug().Msg(fmt.Sprint(v...)) }
func (l raftLogger) Debugf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l raftLogger) Info(v ...any)                  { l.log.Info().Msg(fmt.Sprint(v...)) }
func (l raftLogger) Infof(format string, v ...any) {
	if format == unstableMissingFormat {
		l.log.Debug().Msgf(format, v...)
		return
	}
	l.log.Info().Msgf(format, v...)
}

// unstableMissingFormat is raft's info message for an append response
// whose entries are already stable. With AsyncStorageWrites it is normal
// and comes with most appends under load (etcd-io/raft issue 307; seen
// 50-240 times a second per gateway in the failover benchmark), so it is
// logged at debug.
const unstableMissingFormat = "entry at index %d missing from unstable log; ignoring"

func (l raftLogger) Warning(v ...any) { l.log.Warn().Msg(fmt.Sprint(v...)) }
func (l raftLogger) Warningf(format string, v ...any) {
	l.log.Warn().Msgf(format, v...)
}
func (l raftLogger) Error(v ...any)                 { l.log.Error().Msg(fmt.Sprint(v...)) }
func (l raftLogger) Errorf(format string, v ...any) { l.log.Error().Msgf(format, v...) }
func (l raftLogger) Fatal(v ...any)                 { l.Panic(v...) }
func (l raftLogger) Fatalf(format string, v ...any) { l.Panicf(format, v...) }
func (l raftLogger) Panic(v ...any) {
	msg := fmt.Sprint(v...)
	l.log.WithLevel(zerolog.FatalLevel).Msg(msg)
	panic("raft: " + msg)
}
func (l raftLogger) Panicf(format string, v ...any) { l.Panic(fmt.Sprintf(format, v...)) }
