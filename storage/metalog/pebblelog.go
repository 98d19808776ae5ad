package metalog

import (
	"fmt"

	"github.com/rs/zerolog"
)

// pebbleLogger routes Pebble's log output into a zerolog.Logger so that
// Pebble never writes to stderr on its own. It implements pebble.Logger.
type pebbleLogger struct {
	log zerolog.Logger
}

// Infof logs Pebble's informational messages (flushes, compactions, WAL
// recycling) at debug level: they are routine.
func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug().Msgf(format, args...)
}

// Errorf logs Pebble's errors at error level.
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error().Msgf(format, args...)
}

// Fatalf logs at fatal level and then panics. Pebble calls it only for
// invariant violations it cannot continue from and does not expect it to
// return; a panic keeps the stack trace, unlike an exit.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.WithLevel(zerolog.FatalLevel).Msg(msg)
	panic("pebble: " + msg)
}
