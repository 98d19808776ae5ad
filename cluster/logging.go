package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// NewLogger returns the process logger: human-readable console output when
// w is a terminal, JSON lines otherwise, at the given level (trace, debug,
// info, warn, error).
func NewLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", level)
	}
	out := w
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

// slogBridge is a slog.Handler that writes protoactor's log records into
// zerolog. protoactor logs every connection and actor start at info level;
// those become debug, and a few of its errors that are routine in a
// cluster where peers come and go become warnings or debug lines.
type slogBridge struct {
	log   zerolog.Logger
	attrs []slog.Attr
	group string
}

func newSlogBridge(log zerolog.Logger) *slogBridge {
	return &slogBridge{log: log.With().Str("lib", "protoactor").Logger()}
}

// protoactorLevels overrides the level of known protoactor messages.
var protoactorLevels = map[string]zerolog.Level{
	"EndpointWriter lost connection":                      zerolog.WarnLevel,
	"EndpointWriter failed to connect":                    zerolog.WarnLevel,
	"EndpointWriter failed to create receive stream":      zerolog.DebugLevel,
	"EndpointWriter failed to send connect request":       zerolog.DebugLevel,
	"EndpointWriter failed to receive connect response":   zerolog.DebugLevel,
	"EndpointWriter error when closing the stream":        zerolog.DebugLevel,
	"EndpointWriter error when closing the client conn":   zerolog.DebugLevel,
	"EndpointReader failed to send disconnection message": zerolog.DebugLevel,
	"[Supervision]": zerolog.DebugLevel, // our supervisors log failures themselves
}

func (b *slogBridge) level(r slog.Record) zerolog.Level {
	if lvl, ok := protoactorLevels[r.Message]; ok {
		return lvl
	}
	switch {
	case r.Level >= slog.LevelError:
		return zerolog.ErrorLevel
	case r.Level >= slog.LevelWarn:
		return zerolog.WarnLevel
	default:
		return zerolog.DebugLevel // protoactor's info lines are chatty
	}
}

func (b *slogBridge) Enabled(_ context.Context, l slog.Level) bool {
	// Info is included: it may be promoted by protoactorLevels.
	return b.log.GetLevel() <= zerolog.WarnLevel || l >= slog.LevelError
}

func (b *slogBridge) Handle(_ context.Context, r slog.Record) error {
	ev := b.log.WithLevel(b.level(r))
	if !ev.Enabled() {
		return nil
	}
	add := func(a slog.Attr) bool {
		key := a.Key
		if b.group != "" {
			key = b.group + "." + key
		}
		switch key {
		case "lib", "system":
			return true // constant noise
		case zerolog.LevelFieldName, zerolog.TimestampFieldName, zerolog.MessageFieldName:
			key = "attr_" + key // never shadow the record's own fields
		}
		switch v := a.Value.Resolve().Any().(type) {
		case error:
			ev = ev.Str(key, v.Error())
		case fmt.Stringer:
			ev = ev.Str(key, v.String())
		default:
			ev = ev.Interface(key, v)
		}
		return true
	}
	for _, a := range b.attrs {
		add(a)
	}
	r.Attrs(add)
	ev.Msg(r.Message)
	return nil
}

func (b *slogBridge) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *b
	c.attrs = append(append([]slog.Attr{}, b.attrs...), attrs...)
	return &c
}

func (b *slogBridge) WithGroup(name string) slog.Handler {
	c := *b
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}
