// Package invalid is the one error type for bad input from a caller: a CLI flag, an API
// field, a query filter. The CLI prints Message as its one error line; the Admin and
// audit APIs answer it 422 with Field as the property.
package invalid

import "fmt"

// Error says which input is wrong (Field) and why, in a sentence (Message).
type Error struct {
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Message }

// New returns an *Error about field.
func New(field, format string, args ...any) error {
	return &Error{Field: field, Message: fmt.Sprintf(format, args...)}
}
