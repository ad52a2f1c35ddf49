package pipeline

import (
	"context"
	"errors"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/rs/zerolog"
)

// wmLogger adapts zerolog to Watermill. Watermill's Info lines are lifecycle chatter
// ("Starting handler"), so they go out at debug; errors stay errors until shutdown.
type wmLogger struct {
	l zerolog.Logger
	// closing is closed when the relay starts shutting down.
	closing <-chan struct{}
}

func (w wmLogger) shuttingDown() bool {
	select {
	case <-w.closing:
		return true
	default:
		return false
	}
}

func (w wmLogger) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, context.Canceled) || w.shuttingDown() {
		// Shutdown: a batch whose commit was cut short (its context cancelled, its
		// connection closed) is read again by the next relay; the fan-out is
		// idempotent, so this is not an error anyone must act on.
		w.l.Debug().Err(err).Fields(map[string]any(fields)).Msg(msg)
		return
	}
	w.l.Error().Err(err).Fields(map[string]any(fields)).Msg(msg)
}
func (w wmLogger) Info(msg string, fields watermill.LogFields) {
	w.l.Debug().Fields(map[string]any(fields)).Msg(msg)
}
func (w wmLogger) Debug(msg string, fields watermill.LogFields) {
	w.l.Trace().Fields(map[string]any(fields)).Msg(msg)
}
func (w wmLogger) Trace(msg string, fields watermill.LogFields) {
	w.l.Trace().Fields(map[string]any(fields)).Msg(msg)
}
func (w wmLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return wmLogger{l: w.l.With().Fields(map[string]any(fields)).Logger(), closing: w.closing}
}
